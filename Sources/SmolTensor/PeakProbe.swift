import Foundation

/// Measures this machine's sustained GEMM rate: the MFU denominator when none is given (the bf16
/// kernel's for a bf16 run), and the matmul figures of `smol bench hw` and `smol preflight`.
public enum PeakProbe {
    public enum Kernel: Sendable { case openBLAS, swiftSIMD, bf16 }

    /// Best of `repeats` square n³ GEMMs after a warm-up call, in GFLOP/s.
    public static func gemmGflops(n: Int = 2048, repeats: Int = 5, kernel: Kernel = .openBLAS) -> Double {
        BLAS.yieldIdleThreads
        let a = FloatBuffer(count: n * n), b = FloatBuffer(count: n * n), c = FloatBuffer(count: n * n)
        for i in 0..<(n * n) { a[i] = Float(i % 7) * 0.01; b[i] = Float(i % 5) * 0.01 }
        func once() {
            switch kernel {
            case .openBLAS: BLAS.sgemm(m: n, n: n, k: n, a: a.pointer, lda: n, b: b.pointer, ldb: n, c: c.pointer, ldc: n)
            case .swiftSIMD: SimdGEMM.multiply(m: n, n: n, k: n, a: a.pointer, b: b.pointer, c: c.pointer)
            case .bf16: BF16GEMM.multiply(m: n, n: n, k: n, a: a.pointer, lda: n, b: b.pointer, ldb: n, c: c.pointer, ldc: n)
            }
        }
        // One untimed call first: it starts OpenBLAS's thread pool and faults the pages in.
        once()
        var best = Double.infinity
        for _ in 0..<repeats {
            let t0 = DispatchTime.now().uptimeNanoseconds
            once()
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9)
        }
        return 2 * Double(n) * Double(n) * Double(n) / best / 1e9
    }
}
