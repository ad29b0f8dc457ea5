import CBLAS

/// Row-major single-precision GEMM through OpenBLAS: C = alpha * op(A) * op(B) + beta * C,
/// with op(A) [m, k], op(B) [k, n], C [m, n].
public enum BLAS {
    @inline(__always)
    public static func sgemm(transA: Bool = false, transB: Bool = false,
                             m: Int, n: Int, k: Int, alpha: Float = 1,
                             a: UnsafePointer<Float>, lda: Int,
                             b: UnsafePointer<Float>, ldb: Int,
                             beta: Float = 0,
                             c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_sgemm(CblasRowMajor,
                    transA ? CblasTrans : CblasNoTrans,
                    transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// Threads OpenBLAS uses for one call. Kernels that already run one GEMM per worker set it to 1.
    public static var threads: Int {
        get { Int(openblas_get_num_threads()) }
        set { openblas_set_num_threads(Int32(newValue)) }
    }

    /// Runs `body` with OpenBLAS single-threaded, restoring the previous count after.
    public static func singleThreaded<T>(_ body: () throws -> T) rethrows -> T {
        let saved = threads
        if saved != 1 { threads = 1 }
        defer { if saved != 1 { threads = saved } }
        return try body()
    }
}
