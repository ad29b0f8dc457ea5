/// Vectorised exp for SIMD8<Float> (Cephes-style: 2^n · p(r), |r| ≤ ln2/2, degree-6 polynomial).
/// Relative error below 2e-7 over the float range; inputs below -87.3 flush to 0.
public enum FastExp {
    public typealias V8 = SIMD8<Float>

    @inline(__always)
    public static func exp(_ x0: V8) -> V8 {
        let x = x0.clamped(lowerBound: V8(repeating: -87.3), upperBound: V8(repeating: 88.3))
        let n = (x * 1.442_695_04).rounded(.toNearestOrEven)
        var r = x.addingProduct(n, V8(repeating: -0.693_359_375))
        r = r.addingProduct(n, V8(repeating: 2.121_944_4e-4))
        var p = V8(repeating: 1.987_569_15e-4)
        p = p * r + 1.398_199_95e-3
        p = p * r + 8.333_451_9e-3
        p = p * r + 4.166_579_6e-2
        p = p * r + 1.666_666_55e-1
        p = p * r + 5.000_000_1e-1
        p = p * (r * r) + r + 1
        let bits = (SIMD8<Int32>(n, rounding: .towardZero) &+ 127) &<< 23
        let scale = unsafeBitCast(bits, to: V8.self)
        let result = p * scale
        return result.replacing(with: 0, where: x0 .< V8(repeating: -87.3))
    }

    /// dst[i] = exp(src[i] - shift), returns Σ dst (fixed order).
    @inline(__always)
    public static func expShiftSum(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ n: Int, shift: Float) -> Float {
        var acc = V8(repeating: 0)
        let s = V8(repeating: shift)
        var i = 0
        while i + 8 <= n {
            let e = exp(VectorMath.load(src + i) - s)
            VectorMath.store(e, dst + i)
            acc += e
            i += 8
        }
        var total = acc.sum()
        if i < n {
            var tail = V8(repeating: -.infinity)
            for j in i..<n { tail[j - i] = src[j] }
            let e = exp(tail - s)
            for j in i..<n { dst[j] = e[j - i]; total += e[j - i] }
        }
        return total
    }

    /// max of src[0..<n]
    @inline(__always)
    public static func max(_ src: UnsafePointer<Float>, _ n: Int) -> Float {
        var m = V8(repeating: -.infinity)
        var i = 0
        while i + 8 <= n { m = pointwiseMax(m, VectorMath.load(src + i)); i += 8 }
        var r = m.max()
        while i < n { r = Swift.max(r, src[i]); i += 1 }
        return r
    }
}
