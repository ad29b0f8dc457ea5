import Foundation
import SmolModel

/// Learning-rate schedule: linear warmup, then constant, cosine to a minimum, or
/// warmup–stable–decay (WSD) with a linear or 1−sqrt decay over the last fraction of steps.
public struct ScheduleConfig: Codable, Equatable, Sendable {
    public enum Kind: String, Codable, Sendable { case constant, cosine, wsd }
    public enum DecayShape: String, Codable, Sendable { case linear, sqrt }
    public var type: Kind = .cosine
    public var warmupSteps: Int = 0
    /// Final learning rate as a fraction of the peak (cosine and WSD).
    public var minLrRatio: Double = 0.1
    /// WSD: fraction of all steps spent decaying (SmolLM3: ~0.11).
    public var decayFraction: Double = 0.2
    public var decayShape: DecayShape = .linear

    enum CodingKeys: String, CodingKey, CaseIterable {
        case type, warmupSteps = "warmup_steps", minLrRatio = "min_lr_ratio"
        case decayFraction = "decay_fraction", decayShape = "decay_shape"
    }

    public init() {}

    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.rawValue), section: "schedule")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = ScheduleConfig()
        do { type = try c.decodeIfPresent(Kind.self, forKey: .type) ?? d.type }
        catch { throw ConfigError.invalidValue(key: "schedule.type", reason: "must be one of constant, cosine, wsd") }
        warmupSteps = try c.decodeIfPresent(Int.self, forKey: .warmupSteps) ?? d.warmupSteps
        minLrRatio = try c.decodeIfPresent(Double.self, forKey: .minLrRatio) ?? d.minLrRatio
        decayFraction = try c.decodeIfPresent(Double.self, forKey: .decayFraction) ?? d.decayFraction
        do { decayShape = try c.decodeIfPresent(DecayShape.self, forKey: .decayShape) ?? d.decayShape }
        catch { throw ConfigError.invalidValue(key: "schedule.decay_shape", reason: "must be linear or sqrt") }
    }

    public func validate() throws {
        if warmupSteps < 0 { throw ConfigError.invalidValue(key: "schedule.warmup_steps", reason: "must be ≥ 0, got \(warmupSteps)") }
        if !(minLrRatio >= 0 && minLrRatio <= 1) { throw ConfigError.invalidValue(key: "schedule.min_lr_ratio", reason: "must be in [0, 1], got \(minLrRatio)") }
        if !(decayFraction >= 0 && decayFraction <= 1) { throw ConfigError.invalidValue(key: "schedule.decay_fraction", reason: "must be in [0, 1], got \(decayFraction)") }
    }

    /// Learning rate for update `step` (0-based) of `totalSteps`, peaking at `peak`.
    public func learningRate(step: Int, totalSteps: Int, peak: Double) -> Double {
        let minLr = peak * minLrRatio
        if step < warmupSteps { return peak * Double(step + 1) / Double(warmupSteps) }
        switch type {
        case .constant:
            return peak
        case .cosine:
            let span = max(1, totalSteps - warmupSteps)
            let progress = min(1, Double(step - warmupSteps) / Double(span))
            return minLr + (peak - minLr) * 0.5 * (1 + cos(Double.pi * progress))
        case .wsd:
            let decaySteps = Int((Double(totalSteps) * decayFraction).rounded())
            let decayStart = totalSteps - decaySteps
            if decaySteps == 0 || step < decayStart { return peak }
            let progress = Double(step - decayStart + 1) / Double(decaySteps)
            let factor = decayShape == .linear ? 1 - progress : 1 - progress.squareRoot()
            return minLr + (peak - minLr) * factor
        }
    }
}
