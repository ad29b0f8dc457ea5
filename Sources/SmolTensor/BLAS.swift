import CBLAS
import Foundation

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

    /// OpenBLAS's worker threads spin for a while after each call (2^28 cycles by default). Our own
    /// kernels run between GEMMs on the same cores, and the spinning threads starve them: on 2 cores
    /// the tiny shape trains ~15% slower. Unless the user set OPENBLAS_THREAD_TIMEOUT, make the
    /// workers sleep after 2^4 cycles: re-read the environment and restart the thread pool, which
    /// OpenBLAS starts again on its next threaded call.
    /// Also gives OpenBLAS the same thread count as our kernels (SMOL_THREADS), unless
    /// OPENBLAS_NUM_THREADS says otherwise.
    public static let yieldIdleThreads: Void = {
        let env = ProcessInfo.processInfo.environment
        if env["OPENBLAS_NUM_THREADS"] == nil { openblas_set_num_threads(Int32(Parallel.threads)) }
        if env["OPENBLAS_THREAD_TIMEOUT"] == nil {
            setenv("OPENBLAS_THREAD_TIMEOUT", "4", 1)
            openblas_read_env()
            _ = blas_thread_shutdown_()
        }
    }()

    /// The kernel set OpenBLAS chose when it loaded ("Haswell", "SkylakeX", "Cooperlake", ...):
    /// its own pick for this CPU, or OPENBLAS_CORETYPE's. sgemm speed depends on it (about 2× from
    /// the AVX2 to the AVX-512 kernels on an AVX-512 CPU), so benchmarks print it.
    public static var coreName: String { String(cString: openblas_get_corename()) }

    /// A warning when OPENBLAS_CORETYPE holds OpenBLAS to AVX2-or-narrower kernels on a CPU (and
    /// kernel) that run AVX-512, where OpenBLAS's own pick would be its AVX-512 kernels; nil
    /// otherwise. smol honours the variable; benchmarks print this so the figure is read right.
    public static func narrowKernelWarning(environment: [String: String] = ProcessInfo.processInfo.environment,
                                           cpuFlags: Set<Substring> = CPUFlags.current()) -> String? {
        guard let pinned = environment["OPENBLAS_CORETYPE"] else { return nil }
        guard !["skylakex", "cooperlake", "sapphirerapids"].contains(coreName.lowercased()),
              ["avx512f", "avx512dq", "avx512bw", "avx512vl"].allSatisfy({ cpuFlags.contains(Substring($0)) }) else { return nil }
        return "OPENBLAS_CORETYPE=\(pinned) holds OpenBLAS to its \(coreName) kernels on a CPU with AVX-512; "
            + "unset it to let OpenBLAS pick its AVX-512 kernels (about 2× the sgemm rate, bench/RESULTS.md)"
    }

    /// Runs `body` with OpenBLAS single-threaded, restoring the previous count after.
    public static func singleThreaded<T>(_ body: () throws -> T) rethrows -> T {
        let saved = threads
        if saved != 1 { threads = 1 }
        defer { if saved != 1 { threads = saved } }
        return try body()
    }
}
