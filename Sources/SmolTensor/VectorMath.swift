/// Small vectorised helpers shared by the kernels. SIMD8 maps to one AVX register.
public enum VectorMath {
    public typealias V8 = SIMD8<Float>

    @inline(__always)
    public static func load(_ p: UnsafePointer<Float>) -> V8 {
        UnsafeRawPointer(p).loadUnaligned(as: V8.self)
    }

    @inline(__always)
    public static func store(_ v: V8, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: V8.self)
    }

    /// Σ a[i] b[i] in a fixed order (8 lanes, then the lanes, then the tail).
    @inline(__always)
    public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc = V8(repeating: 0)
        var i = 0
        while i + 8 <= n { acc = acc.addingProduct(load(a + i), load(b + i)); i += 8 }
        var s = acc.sum()
        while i < n { s += a[i] * b[i]; i += 1 }
        return s
    }

    /// Σ a[i]² in a fixed order.
    @inline(__always)
    public static func sumOfSquares(_ a: UnsafePointer<Float>, _ n: Int) -> Float { dot(a, a, n) }

    /// y[i] += alpha * x[i]
    @inline(__always)
    public static func axpy(_ alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        let va = V8(repeating: alpha)
        var i = 0
        while i + 8 <= n { store(load(y + i).addingProduct(va, load(x + i)), y + i); i += 8 }
        while i < n { y[i] += alpha * x[i]; i += 1 }
    }

    /// y[i] += x[i]
    @inline(__always)
    public static func add(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, _ n: Int) {
        var i = 0
        while i + 8 <= n { store(load(y + i) + load(x + i), y + i); i += 8 }
        while i < n { y[i] += x[i]; i += 1 }
    }

    /// Sum of a large array, deterministic for a given thread count, accumulated in Double.
    public static func parallelSumOfSquares(_ a: UnsafePointer<Float>, _ n: Int) -> Double {
        var partials = [Double](repeating: 0, count: Parallel.threads)
        partials.withUnsafeMutableBufferPointer { parts in
            Parallel.chunks(n, minPerChunk: 1 << 16) { p, r in
                var s = 0.0
                var i = r.lowerBound
                while i < r.upperBound {
                    let end = min(i + 4096, r.upperBound)
                    s += Double(sumOfSquares(a + i, end - i))
                    i = end
                }
                parts[p] = s
            }
        }
        return partials.reduce(0, +)
    }
}
