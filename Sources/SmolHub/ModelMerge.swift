import Foundation
import SmolModel
import SmolWeights

/// How `smol merge` combines the models' tensors, as mergekit defines them.
public enum MergeMethod: String, Sendable, CaseIterable {
    /// Σ wᵢ θᵢ / Σ wᵢ, tensor by tensor.
    case linear
    /// Spherical interpolation of two models, each tensor flattened to one vector: the angle comes
    /// from the normalised tensors; nearly parallel ones (|cos| > 0.9995) are interpolated linearly.
    case slerp
}

/// Model merging (model soups, SLERP): models of one architecture and tokenizer in, one model
/// out. Arithmetic is in Float64 and rounded once to Float32, so merging a model with itself gives
/// it back bit for bit.
public enum ModelMerge {
    public static let parallelThreshold = 0.9995
    static let normEpsilon = 1e-8

    /// Checks that the models can be merged: the same tensors with the same shapes, and the same
    /// tokenizer; names the first model and the one that differs. Other configuration differences
    /// (RoPE θ, norm epsilon, context length, ...) are returned as warnings: the first model's
    /// configuration is the merged model's.
    @discardableResult
    public static func checkCompatible(_ models: [PretrainedModel]) throws -> [String] {
        guard let first = models.first else { throw HubError.invalid(path: "merge", reason: "no models given") }
        let layout = first.model.parameters.slots.map { "\($0.name) \($0.shape)" }
        var warnings: [String] = []
        for m in models.dropFirst() {
            let differ = configDifferences(first.config, m.config)
            if m.model.parameters.slots.map({ "\($0.name) \($0.shape)" }) != layout {
                throw HubError.invalid(path: m.source, reason: "has other tensors than \(first.source) (\(differ.joined(separator: ", "))); only models of one architecture merge")
            }
            if !m.tokenizer.hasSameTokens(as: first.tokenizer) {
                throw HubError.invalid(path: m.source, reason: "has another tokenizer than \(first.source) (vocabulary, merges or special tokens differ); merged weights would mean different tokens")
            }
            if !differ.isEmpty { warnings.append("\(m.source): configuration differs from \(first.source)'s, which the merge keeps: \(differ.joined(separator: ", "))") }
        }
        return warnings
    }

    /// "key: a vs b" for each configuration key whose values differ (Hugging Face key names);
    /// floats equal in float32 (a GGUF stores them so) are the same.
    static func configDifferences(_ a: LlamaConfig, _ b: LlamaConfig) -> [String] {
        func dict(_ c: LlamaConfig) -> [String: Any] {
            (try? JSONSerialization.jsonObject(with: JSONEncoder().encode(c))) as? [String: Any] ?? [:]
        }
        let x = dict(a), y = dict(b)
        func text(_ v: Any?) -> String {
            guard let v else { return "none" }
            if let d = v as? Double, d != d.rounded() { return "\(Float(d))" }
            return "\(v)"
        }
        return Set(x.keys).union(y.keys).sorted().compactMap { k in
            let u = text(x[k]), v = text(y[k])
            return u == v ? nil : "\(k): \(u) vs \(v)"
        }
    }

    /// Merges into a copy-free result: the first model's parameters are overwritten and the first
    /// model (with its tokenizer and chat template) is returned.
    public static func merge(_ models: [PretrainedModel], method: MergeMethod, weights: [Double]? = nil, t: Double = 0.5) throws -> PretrainedModel {
        for w in try checkCompatible(models) { FileHandle.standardError.write(Data("warning: \(w)\n".utf8)) }
        let stores = models.map { $0.model.parameters }
        let out = stores[0]
        switch method {
        case .linear:
            let w = weights ?? Array(repeating: 1.0, count: models.count)
            guard w.count == models.count else {
                throw HubError.invalid(path: "--weights", reason: "\(w.count) weights for \(models.count) models")
            }
            let total = w.reduce(0, +)
            guard w.allSatisfy(\.isFinite), abs(total) > 1e-12 else {
                throw HubError.invalid(path: "--weights", reason: "weights must be finite and not sum to zero (they sum to \(total))")
            }
            for slot in out.slots {
                let srcs = stores.map { $0.pointer(slot.name, in: $0.values) }
                let dst = out.pointer(slot.name, in: out.values)
                for i in 0..<slot.count {
                    var acc = 0.0
                    for k in 0..<srcs.count { acc += w[k] * Double(srcs[k][i]) }
                    dst[i] = Float(acc / total)
                }
            }
        case .slerp:
            guard models.count == 2 else { throw HubError.invalid(path: "--method slerp", reason: "interpolates exactly two models, got \(models.count)") }
            guard t.isFinite, (0...1).contains(t) else { throw HubError.invalid(path: "--t", reason: "must be in [0, 1], got \(t)") }
            for slot in out.slots {
                let a = stores[0].pointer(slot.name, in: stores[0].values), b = stores[1].pointer(slot.name, in: stores[1].values)
                let (s0, s1) = slerpCoefficients(a, b, count: slot.count, t: t)
                for i in 0..<slot.count { a[i] = Float(s0 * Double(a[i]) + s1 * Double(b[i])) }
            }
        }
        return models[0]
    }

    /// The two coefficients SLERP multiplies the original tensors by: from the angle between the
    /// normalised tensors, or (1 − t, t) when they are nearly parallel.
    static func slerpCoefficients(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count: Int, t: Double) -> (Double, Double) {
        var aa = 0.0, bb = 0.0, ab = 0.0
        for i in 0..<count {
            let x = Double(a[i]), y = Double(b[i])
            aa += x * x; bb += y * y; ab += x * y
        }
        // mergekit normalises a vector only when its norm exceeds eps.
        let na = aa.squareRoot(), nb = bb.squareRoot()
        let dot = ab / (na > normEpsilon ? na : 1) / (nb > normEpsilon ? nb : 1)
        if abs(dot) > parallelThreshold { return (1 - t, t) }
        let theta0 = acos(dot), sinTheta0 = sin(theta0)
        let thetaT = theta0 * t
        return (sin(theta0 - thetaT) / sinTheta0, sin(thetaT) / sinTheta0)
    }
}
