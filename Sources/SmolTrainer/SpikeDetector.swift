import Foundation
import SmolModel

/// What to do about loss spikes (../shared/reference/infrastructure.md, "Training health signals").
public struct StabilityConfig: Codable, Equatable, Sendable {
    public enum Rule: String, Codable, Sendable {
        /// OLMo: loss or grad norm above mean + `sigmas` σ of the last `window` steps.
        case olmo
        /// llm-foundry: loss ≥ `factor` × the mean of the last `window` steps, `consecutive` times in a row.
        case foundry
        case off = "none"   // not "off": YAML reads off as false
    }
    public enum Policy: String, Codable, Sendable {
        /// Record the spike and train on.
        case log
        /// Do not apply the update of the spiking step (its data is consumed).
        case skip
        /// Restore the last checkpoint and skip the data since it, plus `skip_batches` more.
        case rollback
    }
    public var rule: Rule = .off
    public var policy: Policy = .log
    public var window = 128
    public var minSamples = 64
    public var sigmas = 6.0
    public var factor = 2.0
    public var consecutive = 5
    public var skipBatches = 0
    public var maxRollbacks = 3
    /// Fire drill: these steps train on a corrupted batch (every token one id, as a zeroed shard
    /// region would give), to rehearse detection and recovery.
    public var corruptBatchAt: [Int] = []
    /// Fire drill: initialise as if on this many tensor-parallel ranks sharing one seed (the
    /// playbook's 1-trillion-token restart), to check that the baseline guard catches it.
    public var sharedSeedTPRanks = 1

    enum CodingKeys: String, CodingKey, CaseIterable {
        case rule, policy, window, sigmas, factor, consecutive
        case minSamples = "min_samples", skipBatches = "skip_batches", maxRollbacks = "max_rollbacks", corruptBatchAt = "corrupt_batch_at"
        case sharedSeedTPRanks = "shared_seed_tp_ranks"
    }
    public init() {}
    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.rawValue), section: "stability")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = StabilityConfig()
        rule = try c.decodeIfPresent(Rule.self, forKey: .rule) ?? .olmo
        policy = try c.decodeIfPresent(Policy.self, forKey: .policy) ?? d.policy
        window = try c.decodeIfPresent(Int.self, forKey: .window) ?? (rule == .foundry ? 100 : d.window)
        minSamples = try c.decodeIfPresent(Int.self, forKey: .minSamples) ?? min(d.minSamples, window)
        sigmas = try c.decodeIfPresent(Double.self, forKey: .sigmas) ?? d.sigmas
        factor = try c.decodeIfPresent(Double.self, forKey: .factor) ?? d.factor
        consecutive = try c.decodeIfPresent(Int.self, forKey: .consecutive) ?? d.consecutive
        skipBatches = try c.decodeIfPresent(Int.self, forKey: .skipBatches) ?? d.skipBatches
        maxRollbacks = try c.decodeIfPresent(Int.self, forKey: .maxRollbacks) ?? d.maxRollbacks
        corruptBatchAt = try c.decodeIfPresent([Int].self, forKey: .corruptBatchAt) ?? []
        sharedSeedTPRanks = try c.decodeIfPresent(Int.self, forKey: .sharedSeedTPRanks) ?? 1
    }

    public func validate() throws {
        func bad(_ k: String, _ r: String) -> ConfigError { .invalidValue(key: "stability." + k, reason: r) }
        if window < 2 { throw bad("window", "must be ≥ 2, got \(window)") }
        if minSamples < 2 || minSamples > window { throw bad("min_samples", "must be in 2...window (\(window)), got \(minSamples)") }
        if !(sigmas > 0) { throw bad("sigmas", "must be positive, got \(sigmas)") }
        if !(factor > 1) { throw bad("factor", "must be > 1, got \(factor)") }
        if consecutive < 1 { throw bad("consecutive", "must be ≥ 1, got \(consecutive)") }
        if skipBatches < 0 { throw bad("skip_batches", "must be ≥ 0, got \(skipBatches)") }
        if sharedSeedTPRanks < 1 { throw bad("shared_seed_tp_ranks", "must be ≥ 1, got \(sharedSeedTPRanks)") }
        if maxRollbacks < 0 { throw bad("max_rollbacks", "must be ≥ 0, got \(maxRollbacks)") }
    }
}

/// A detected spike.
public struct Spike: Codable, Sendable, Equatable {
    public var step: Int
    public var loss: Double
    public var gradNorm: Double
    /// What crossed its threshold: "loss", "grad_norm" or both, and the threshold.
    public var signal: String
    public var threshold: Double
    public var rule: String
    enum CodingKeys: String, CodingKey { case step, loss, signal, threshold, rule, gradNorm = "grad_norm" }
}

/// Rolling statistics of loss and grad norm over the last `window` healthy steps; a step that
/// spikes does not enter the window (so a divergence keeps firing). Non-finite values always fire.
public struct SpikeDetector: Sendable {
    public let config: StabilityConfig
    private var losses: [Double] = [], norms: [Double] = []
    private var streak = 0

    public init(config: StabilityConfig) { self.config = config }

    static func meanStd(_ x: [Double]) -> (Double, Double) {
        let m = x.reduce(0, +) / Double(x.count)
        let v = x.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(x.count)
        return (m, v.squareRoot())
    }

    public mutating func check(step: Int, loss: Double, gradNorm: Double) -> Spike? {
        guard config.rule != .off else { return nil }
        var spike: Spike?
        if !loss.isFinite || !gradNorm.isFinite {
            spike = Spike(step: step, loss: loss, gradNorm: gradNorm, signal: "non-finite", threshold: .infinity, rule: config.rule.rawValue)
        } else if losses.count >= config.minSamples {
            switch config.rule {
            case .olmo:
                let (ml, sl) = SpikeDetector.meanStd(losses), (mg, sg) = SpikeDetector.meanStd(norms)
                let tl = ml + config.sigmas * sl, tg = mg + config.sigmas * sg
                if loss > tl { spike = Spike(step: step, loss: loss, gradNorm: gradNorm, signal: "loss", threshold: tl, rule: "olmo") }
                else if gradNorm > tg { spike = Spike(step: step, loss: loss, gradNorm: gradNorm, signal: "grad_norm", threshold: tg, rule: "olmo") }
            case .foundry:
                let t = config.factor * SpikeDetector.meanStd(losses).0
                if loss >= t {
                    streak += 1
                    if streak >= config.consecutive { spike = Spike(step: step, loss: loss, gradNorm: gradNorm, signal: "loss", threshold: t, rule: "foundry") }
                    return spike   // flagged values stay out of the window
                }
            case .off: break
            }
        }
        if spike == nil {
            streak = 0
            losses.append(loss); norms.append(gradNorm)
            if losses.count > config.window { losses.removeFirst(); norms.removeFirst() }
        }
        return spike
    }
}
