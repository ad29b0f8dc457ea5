import Foundation

/// `rope_scaling` of a config.json: YaRN (Peng et al., 2023), as transformers'
/// `_compute_yarn_parameters` computes it. Frequencies that turn many times within the original
/// context keep their value (extrapolation), slow ones are divided by `factor` (interpolation),
/// with a linear ramp between the dimensions whose wavelengths fit `beta_fast` and `beta_slow`
/// rotations; cos and sin are multiplied by the attention factor (0.1·ln(factor) + 1 by default).
public struct RopeScaling: Codable, Equatable, Sendable {
    public var ropeType: String
    public var factor: Double
    /// The context the model was trained at (default: max_position_embeddings).
    public var originalMaxPositionEmbeddings: Int?
    public var betaFast: Double?
    public var betaSlow: Double?
    public var attentionFactor: Double?
    public var mscale: Double?
    public var mscaleAllDim: Double?
    public var truncate: Bool?

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case ropeType = "rope_type", factor, betaFast = "beta_fast", betaSlow = "beta_slow", truncate, mscale
        case originalMaxPositionEmbeddings = "original_max_position_embeddings", attentionFactor = "attention_factor"
        case mscaleAllDim = "mscale_all_dim"
    }

    public init(ropeType: String = "yarn", factor: Double, originalMaxPositionEmbeddings: Int? = nil,
                betaFast: Double? = nil, betaSlow: Double? = nil, attentionFactor: Double? = nil) {
        self.ropeType = ropeType; self.factor = factor; self.originalMaxPositionEmbeddings = originalMaxPositionEmbeddings
        self.betaFast = betaFast; self.betaSlow = betaSlow; self.attentionFactor = attentionFactor
    }

    public init(from decoder: Decoder) throws {
        // transformers ≥ 5 writes these keys inside rope_parameters with rope_theta beside them.
        try rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.rawValue) + ["type", "rope_theta"], section: "model.rope_scaling")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        struct Legacy: Decodable { var type: String? }
        ropeType = try c.decodeIfPresent(String.self, forKey: .ropeType) ?? (try Legacy(from: decoder).type) ?? "default"
        factor = try c.decodeIfPresent(Double.self, forKey: .factor) ?? .nan   // required: validate() names it
        originalMaxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .originalMaxPositionEmbeddings)
        betaFast = try c.decodeIfPresent(Double.self, forKey: .betaFast)
        betaSlow = try c.decodeIfPresent(Double.self, forKey: .betaSlow)
        attentionFactor = try c.decodeIfPresent(Double.self, forKey: .attentionFactor)
        mscale = try c.decodeIfPresent(Double.self, forKey: .mscale)
        mscaleAllDim = try c.decodeIfPresent(Double.self, forKey: .mscaleAllDim)
        truncate = try c.decodeIfPresent(Bool.self, forKey: .truncate)
    }

    /// Checks the values, naming the key (under `model.rope_scaling`).
    public func validate(maxPositionEmbeddings: Int) throws {
        func fail(_ key: String, _ why: String) -> ConfigError { .invalidValue(key: "model.rope_scaling.\(key)", reason: why) }
        guard ropeType == "yarn" else { throw fail("rope_type", "'\(ropeType)' is not supported (yarn)") }
        guard !factor.isNaN else { throw fail("factor", "is required (the context extension, e.g. 4.0)") }
        guard factor.isFinite, factor >= 1, factor <= 1024 else { throw fail("factor", "must be in [1, 1024], got \(factor)") }
        if let o = originalMaxPositionEmbeddings, o <= 0 || o > maxPositionEmbeddings {
            throw fail("original_max_position_embeddings", "must be in 1...max_position_embeddings (\(maxPositionEmbeddings)), got \(o)")
        }
        for (k, v) in [("beta_fast", betaFast), ("beta_slow", betaSlow), ("attention_factor", attentionFactor)] {
            if let v, !(v > 0 && v.isFinite) { throw fail(k, "must be positive, got \(v)") }
        }
        if (betaFast ?? 32) <= (betaSlow ?? 1) { throw fail("beta_fast", "must be above beta_slow") }
    }

    /// The inverse frequency of each of the head's `dim / 2` rotation pairs, and the factor cos and
    /// sin are multiplied by.
    public func parameters(dim: Int, theta: Double, maxPositionEmbeddings: Int) -> (inverseFrequencies: [Double], attentionFactor: Double) {
        func mscaleOf(_ scale: Double, _ m: Double = 1) -> Double { scale <= 1 ? 1 : 0.1 * m * Foundation.log(scale) + 1 }
        var attention = attentionFactor
        if attention == nil {
            if let m = mscale, let all = mscaleAllDim, m != 0, all != 0 { attention = mscaleOf(factor, m) / mscaleOf(factor, all) }
            else { attention = mscaleOf(factor) }
        }
        let original = Double(originalMaxPositionEmbeddings ?? maxPositionEmbeddings)
        let fast = betaFast ?? 32, slow = betaSlow ?? 1
        // The dimension whose wavelength fits `rotations` turns in the original context.
        func correctionDim(_ rotations: Double) -> Double {
            Double(dim) * Foundation.log(original / (rotations * 2 * .pi)) / (2 * Foundation.log(theta))
        }
        var low = correctionDim(fast), high = correctionDim(slow)
        if truncate ?? true { low = low.rounded(.down); high = high.rounded(.up) }
        low = max(low, 0); high = min(high, Double(dim - 1))
        if low == high { high += 0.001 }
        let half = dim / 2
        var inv = [Double](repeating: 0, count: half)
        for i in 0..<half {
            // transformers computes the base frequencies in float32.
            let posFreq = Double(Float(Foundation.pow(theta, Double(Float(2 * i) / Float(dim)))))
            let extrapolation = 1 / posFreq, interpolation = 1 / (factor * posFreq)
            let ramp = min(max((Double(i) - low) / (high - low), 0), 1)
            let keep = 1 - ramp     // share of extrapolation
            inv[i] = interpolation * (1 - keep) + extrapolation * keep
        }
        return (inv, attention!)
    }
}
