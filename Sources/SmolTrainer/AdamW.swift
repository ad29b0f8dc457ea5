import Foundation
import SmolModel
import SmolTensor

/// AdamW hyperparameters (PyTorch semantics: decoupled decay p ← p − lr·wd·p before the Adam step).
public struct OptimizerConfig: Codable, Equatable, Sendable {
    public var lr: Double = 3e-4
    public var beta1: Double = 0.9
    public var beta2: Double = 0.95
    public var eps: Double = 1e-8
    public var weightDecay: Double = 0.1
    /// Glob patterns (fnmatch) of parameter names that get no weight decay. SmolLM3 excluded the
    /// embeddings; norm weights are scales, not matrices, and are excluded as usual.
    public var noDecay: [String] = ["*embed_tokens*", "*norm*"]
    /// Global gradient-norm clipping threshold; 0 disables.
    public var gradClip: Double = 1.0

    enum CodingKeys: String, CodingKey, CaseIterable {
        case lr, beta1, beta2, eps, weightDecay = "weight_decay", noDecay = "no_decay", gradClip = "grad_clip"
    }

    public init() {}

    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.rawValue), section: "optimizer")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = OptimizerConfig()
        lr = try c.decodeIfPresent(Double.self, forKey: .lr) ?? d.lr
        beta1 = try c.decodeIfPresent(Double.self, forKey: .beta1) ?? d.beta1
        beta2 = try c.decodeIfPresent(Double.self, forKey: .beta2) ?? d.beta2
        eps = try c.decodeIfPresent(Double.self, forKey: .eps) ?? d.eps
        weightDecay = try c.decodeIfPresent(Double.self, forKey: .weightDecay) ?? d.weightDecay
        noDecay = try c.decodeIfPresent([String].self, forKey: .noDecay) ?? d.noDecay
        gradClip = try c.decodeIfPresent(Double.self, forKey: .gradClip) ?? d.gradClip
    }

    public func validate() throws {
        func bad(_ k: String, _ r: String) -> ConfigError { .invalidValue(key: "optimizer." + k, reason: r) }
        if !(lr >= 0) || !lr.isFinite { throw bad("lr", "must be a non-negative number, got \(lr)") }
        if !(beta1 >= 0 && beta1 < 1) { throw bad("beta1", "must be in [0, 1), got \(beta1)") }
        if !(beta2 >= 0 && beta2 < 1) { throw bad("beta2", "must be in [0, 1), got \(beta2)") }
        if !(eps > 0) { throw bad("eps", "must be positive, got \(eps)") }
        if !(weightDecay >= 0) { throw bad("weight_decay", "must be ≥ 0, got \(weightDecay)") }
        if !(gradClip >= 0) { throw bad("grad_clip", "must be ≥ 0 (0 disables clipping), got \(gradClip)") }
    }
}

/// AdamW over the model's flat parameter buffer, with the moments in the same layout. With ZeRO-1
/// a rank owns a `shard` of the flat buffer: its moments cover that range only (m[i] belongs to
/// parameter shard.lowerBound + i) and `update` changes only those parameters.
public final class AdamW {
    public let config: OptimizerConfig
    public let m: FloatBuffer, v: FloatBuffer
    public private(set) var step: Int = 0
    /// Whether each tensor slot gets weight decay.
    public let decays: [Bool]
    let slots: [TensorSlot]
    /// The range of the flat parameter buffer this optimizer updates (all of it without ZeRO).
    public let shard: Range<Int>

    public init(config: OptimizerConfig, parameters: ParameterStore, shard: Range<Int>? = nil) {
        self.config = config
        slots = parameters.slots
        self.shard = shard ?? 0..<parameters.count
        m = FloatBuffer(count: self.shard.count)
        v = FloatBuffer(count: self.shard.count)
        decays = parameters.slots.map { s in !config.noDecay.contains { fnmatch($0, s.name, 0) == 0 } }
    }

    /// The part of `slot` inside the shard, as a range of the flat buffer (empty when outside).
    public func owned(_ slot: TensorSlot) -> Range<Int> {
        let lo = max(slot.offset, shard.lowerBound), hi = min(slot.offset + slot.count, shard.upperBound)
        return lo < hi ? lo..<hi : lo..<lo
    }

    /// Global L2 norm of the gradient (deterministic for a given thread count).
    public static func gradientNorm(_ grads: FloatBuffer) -> Double {
        VectorMath.parallelSumOfSquares(grads.pointer, grads.count).squareRoot()
    }

    /// Clips the gradient to `grad_clip` (PyTorch: scale by clip/(norm + 1e-6) when norm > clip),
    /// then applies one AdamW update at learning rate `lr`. Returns the norm before clipping
    /// (`gradientNorm` when the caller has already computed it).
    @discardableResult
    public func update(parameters: FloatBuffer, gradients: FloatBuffer, lr: Double, gradientNorm: Double? = nil) -> Double {
        let norm = gradientNorm ?? AdamW.gradientNorm(gradients)
        var gradScale: Float = 1
        if config.gradClip > 0 && norm > config.gradClip { gradScale = Float(config.gradClip / (norm + 1e-6)) }
        step += 1
        let b1 = Float(config.beta1), b2 = Float(config.beta2)
        let bc1 = 1 - pow(config.beta1, Double(step)), bc2 = 1 - pow(config.beta2, Double(step))
        let stepSize = Float(lr / bc1), bc2Sqrt = Float(bc2.squareRoot()), eps = Float(config.eps)
        for (i, s) in slots.enumerated() {
            let range = owned(s)
            if range.isEmpty { continue }
            let decay: Float = decays[i] ? Float(1 - lr * config.weightDecay) : 1
            let p = parameters.pointer + range.lowerBound, g = gradients.pointer + range.lowerBound
            let mp = m.pointer + (range.lowerBound - shard.lowerBound), vp = v.pointer + (range.lowerBound - shard.lowerBound)
            Parallel.chunks(range.count, minPerChunk: 1 << 14) { _, r in
                typealias V = SIMD8<Float>
                let vb1 = V(repeating: b1), vb2 = V(repeating: b2), vscale = V(repeating: gradScale)
                let vdecay = V(repeating: decay), vstep = V(repeating: stepSize)
                let vbc = V(repeating: 1 / bc2Sqrt), veps = V(repeating: eps)
                var j = r.lowerBound
                while j + 8 <= r.upperBound {
                    let gj = VectorMath.load(g + j) * vscale
                    let mj = vb1 * VectorMath.load(mp + j) + (1 - vb1) * gj
                    let vj = vb2 * VectorMath.load(vp + j) + (1 - vb2) * gj * gj
                    VectorMath.store(mj, mp + j); VectorMath.store(vj, vp + j)
                    VectorMath.store(VectorMath.load(p + j) * vdecay - vstep * mj / (vj.squareRoot() * vbc + veps), p + j)
                    j += 8
                }
                while j < r.upperBound {
                    let gj = g[j] * gradScale
                    let mj = b1 * mp[j] + (1 - b1) * gj
                    let vj = b2 * vp[j] + (1 - b2) * gj * gj
                    mp[j] = mj; vp[j] = vj
                    p[j] = p[j] * decay - stepSize * mj / (vj.squareRoot() * (1 / bc2Sqrt) + eps)
                    j += 1
                }
            }
        }
        return norm
    }

    /// Restores the step count from a checkpoint (the moments are read into m and v directly).
    public func restore(step: Int) { self.step = step }
}
