import Foundation
import SmolTensor

/// Rotary position embedding, Hugging Face layout: dimension i pairs with i + D/2
/// ("rotate half"), frequency θ^(−2i/D), or YaRN's frequencies and attention factor (the factor
/// scales cos and sin, so both q and k: as transformers applies it).
public final class RoPETable {
    public let headDim: Int
    public let maxPositions: Int
    let cos: [Float], sin: [Float]   // [maxPositions, D/2]

    public init(headDim: Int, maxPositions: Int, theta: Double, scaling: RopeScaling? = nil) {
        self.headDim = headDim
        self.maxPositions = maxPositions
        let half = headDim / 2
        var inverse = (0..<half).map { Foundation.pow(theta, -2.0 * Double($0) / Double(headDim)) }
        var attention = 1.0
        if let scaling { (inverse, attention) = scaling.parameters(dim: headDim, theta: theta, maxPositionEmbeddings: maxPositions) }
        var c = [Float](repeating: 0, count: maxPositions * half), s = c
        for p in 0..<maxPositions {
            for i in 0..<half {
                let angle = Double(p) * inverse[i]
                c[p * half + i] = Float(Foundation.cos(angle) * attention)
                s[p * half + i] = Float(Foundation.sin(angle) * attention)
            }
        }
        cos = c; sin = s
    }

    /// In place on x [N, heads, D] at positions [N]:
    ///   forward  (a, b) -> (a cos − b sin, b cos + a sin)
    ///   backward (a, b) -> (a cos + b sin, b cos − a sin)   (the transpose of the rotation)
    func apply(_ x: UnsafeMutablePointer<Float>, positions: UnsafePointer<Int32>, n: Int, heads: Int, inverse: Bool) {
        let half = headDim / 2, d = headDim
        cos.withUnsafeBufferPointer { cosTable in
            sin.withUnsafeBufferPointer { sinTable in
                let sign: Float = inverse ? -1 : 1
                Parallel.forEach(n, minPerChunk: 16) { t in
                    let pos = Int(positions[t])
                    let cp = cosTable.baseAddress! + pos * half, sp = sinTable.baseAddress! + pos * half
                    for h in 0..<heads {
                        let v = x + (t * heads + h) * d
                        for i in 0..<half {
                            let a = v[i], b = v[i + half], cs = cp[i], sn = sp[i] * sign
                            v[i] = a * cs - b * sn
                            v[i + half] = b * cs + a * sn
                        }
                    }
                }
            }
        }
    }
}
