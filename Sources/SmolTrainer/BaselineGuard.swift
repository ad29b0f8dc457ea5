import Foundation
import SmolModel

/// `baseline:` — compare the run at every eval point with a baseline run (from the run store) or a
/// curve file, at the same number of tokens, and raise an alert (optionally stop) when it is worse
/// by more than a tolerance for `patience` consecutive points. The playbook's 1-trillion-token
/// restart was found this way: the broken run's loss looked fine on its own.
public struct BaselineConfig: Codable, Equatable, Sendable {
    /// Baseline run in the store: id, name or output directory.
    public var run: String?
    /// Or a curve file: JSONL of {"tokens": N, "value": x} (a metrics.jsonl works too: its eval rows' val_loss).
    public var curve: String?
    /// "val_loss", or "task/metric" from training.eval_tasks.
    public var metric = "val_loss"
    /// Relative margin: worse means value > baseline · (1 + tolerance) for losses, < baseline · (1 − tolerance) for scores.
    public var tolerance = 0.02
    public var patience = 3
    /// Stop training once the alert fires.
    public var stop = false

    enum CodingKeys: String, CodingKey, CaseIterable { case run, curve, metric, tolerance, patience, stop }
    public init() {}
    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.rawValue), section: "baseline")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        run = try c.decodeIfPresent(String.self, forKey: .run)
        curve = try c.decodeIfPresent(String.self, forKey: .curve)
        metric = try c.decodeIfPresent(String.self, forKey: .metric) ?? "val_loss"
        tolerance = try c.decodeIfPresent(Double.self, forKey: .tolerance) ?? 0.02
        patience = try c.decodeIfPresent(Int.self, forKey: .patience) ?? 3
        stop = try c.decodeIfPresent(Bool.self, forKey: .stop) ?? false
    }

    public func validate() throws {
        func bad(_ k: String, _ r: String) -> ConfigError { .invalidValue(key: "baseline." + k, reason: r) }
        if (run == nil) == (curve == nil) { throw bad("run", "give either baseline.run or baseline.curve") }
        if !(tolerance >= 0) { throw bad("tolerance", "must be ≥ 0, got \(tolerance)") }
        if patience < 1 { throw bad("patience", "must be ≥ 1, got \(patience)") }
    }

    public var lowerIsBetter: Bool { metricLowerIsBetter(metric) }

    /// Reads a curve file: rows with "tokens" and "value", or metrics.jsonl eval rows with the metric.
    public static func readCurve(path: String, metric: String) throws -> [(tokens: Double, value: Double)] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ConfigError.invalidFile(path: path, reason: "cannot read the baseline curve")
        }
        var out: [(Double, Double)] = []
        for (i, line) in text.split(separator: "\n").enumerated() {
            guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                throw ConfigError.invalidFile(path: "\(path):\(i + 1)", reason: "not a JSON object")
            }
            let tasks = o["tasks"] as? [String: Any]
            guard let t = (o["tokens"] as? NSNumber)?.doubleValue else { continue }
            if let v = (o["value"] as? NSNumber)?.doubleValue ?? (o[metric] as? NSNumber)?.doubleValue ?? (tasks?[metric] as? NSNumber)?.doubleValue {
                out.append((t, v))
            }
        }
        if out.isEmpty { throw ConfigError.invalidFile(path: path, reason: "no points of '\(metric)' in the baseline curve") }
        return out.sorted { $0.0 < $1.0 }
    }
}

/// One comparison with the baseline at an eval point.
public struct BaselineCheck: Codable, Sendable, Equatable {
    public var step: Int
    public var tokens: Int
    public var value: Double
    public var baseline: Double
    /// (value − baseline) / |baseline|
    public var relative: Double
    public var worse: Bool
    /// Consecutive worse points so far.
    public var streak: Int
    public var alert: Bool
}

public struct BaselineGuard: Sendable {
    public let config: BaselineConfig
    public let curve: [(tokens: Double, value: Double)]
    private var streak = 0

    public init(config: BaselineConfig, curve: [(tokens: Double, value: Double)]) { self.config = config; self.curve = curve }

    /// The baseline at `tokens`, linearly interpolated; nil outside the baseline's range.
    public func baseline(at tokens: Double) -> Double? {
        interpolate(xs: curve.map(\.tokens), ys: curve.map(\.value), at: tokens)
    }

    public mutating func check(step: Int, tokens: Int, value: Double) -> BaselineCheck? {
        guard let b = baseline(at: Double(tokens)) else { return nil }
        let worse = config.lowerIsBetter ? !(value <= b * (1 + config.tolerance)) : !(value >= b * (1 - config.tolerance))
        streak = worse ? streak + 1 : 0
        return BaselineCheck(step: step, tokens: tokens, value: value, baseline: b, relative: (value - b) / max(abs(b), 1e-12),
                             worse: worse, streak: streak, alert: streak >= config.patience)
    }
}
