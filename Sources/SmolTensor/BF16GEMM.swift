import Foundation
import SmolKernels

/// The bf16 GEMM kernels of Sources/SmolKernels, spread over `Parallel.threads`: C is cut into
/// column blocks (row blocks when it is taller than wide), one call of the kernel per block, each
/// with its own packing scratch. The cut depends only on the sizes and the thread count, so the
/// same inputs give the same bits.
public enum BF16GEMM {
    /// A bf16 GEMM kernel. Both round the inputs to bf16 and sum in float32; they differ in speed
    /// and in the order of the float32 sums.
    public enum Kernel: String, Sendable {
        /// Intel AMX tiles (tdpbf16ps): a 32×32 block of C per step of 32 k-values.
        case amx
        /// AVX512-BF16 (vdpbf16ps): an 8×32 block of C in zmm registers.
        case avx512bf16 = "avx512-bf16"
    }

    /// The kernel this process runs: AMX where the CPU and OS allow it, else AVX512-BF16, else
    /// none. SMOL_BF16=avx512 skips AMX; SMOL_BF16=off disables both (the test suite's way to cover
    /// CPUs without them).
    public static let kernel: Kernel? = {
        let setting = ProcessInfo.processInfo.environment["SMOL_BF16"]
        if setting == "off" || smol_cpu_has_avx512_bf16() == 0 { return nil }
        if setting != "avx512" && smol_cpu_has_amx_bf16() != 0 { return .amx }
        return .avx512bf16
    }()

    /// Why no kernel runs here, in words; nil when one does.
    public static var unavailableReason: String? {
        if kernel != nil { return nil }
        if ProcessInfo.processInfo.environment["SMOL_BF16"] == "off" { return "SMOL_BF16=off" }
        return "this CPU does not execute AVX512-BF16"
    }

    /// Row-major C[m, n] = alpha · op(A) · op(B) + beta · C, as `BLAS.sgemm`, inputs rounded to bf16.
    public static func multiply(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
                                a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                                beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        guard let kernel else { preconditionFailure("bf16 GEMM without a kernel: \(unavailableReason ?? "")") }
        if m <= 0 || n <= 0 { return }
        // Blocks are whole tiles (32 columns; 32 rows for AMX, 8 for AVX512-BF16), at least two each.
        let rowTile = kernel == .amx ? 32 : 8
        let byColumns = n >= m
        let parts = max(1, min(Parallel.threads, byColumns ? n / 64 : m / (2 * rowTile)))
        // After rounding, a block is at most a share plus one tile.
        let (bm, bn) = byColumns ? (m, n / parts + 32) : (m / parts + rowTile, n)
        let bytes = kernel == .amx ? smol_gemm_amx_scratch_bytes(Int32(bm), Int32(bn), Int32(k))
                                   : smol_gemm_bf16_scratch_bytes(Int32(bm), Int32(bn), Int32(k))
        let scratch = Scratch.shared.buffers(count: parts, bytes: bytes)
        let run = kernel == .amx ? smol_gemm_amx : smol_gemm_bf16
        let (ta, tb) = (Int32(transA ? 1 : 0), Int32(transB ? 1 : 0))
        Parallel.chunks(parts) { p, _ in
            if byColumns {
                let j0 = (n * p / parts) & ~31, j1 = p == parts - 1 ? n : (n * (p + 1) / parts) & ~31
                if j1 <= j0 { return }
                run(ta, tb, Int32(m), Int32(j1 - j0), Int32(k), alpha, a, Int32(lda), transB ? b + j0 * ldb : b + j0, Int32(ldb),
                    beta, c + j0, Int32(ldc), scratch[p])
            } else {
                let i0 = (m * p / parts) / rowTile * rowTile, i1 = p == parts - 1 ? m : (m * (p + 1) / parts) / rowTile * rowTile
                if i1 <= i0 { return }
                run(ta, tb, Int32(i1 - i0), Int32(n), Int32(k), alpha, transA ? a + i0 : a + i0 * lda, Int32(lda), b, Int32(ldb),
                    beta, c + i0 * ldc, Int32(ldc), scratch[p])
            }
        }
    }

    /// Bytes of scratch `multiplyOnThisThread` needs for GEMMs up to these sizes.
    public static func scratchBytes(m: Int, n: Int, k: Int) -> Int {
        kernel == .amx ? smol_gemm_amx_scratch_bytes(Int32(m), Int32(n), Int32(k)) : smol_gemm_bf16_scratch_bytes(Int32(m), Int32(n), Int32(k))
    }

    /// The same GEMM on the calling thread with the caller's scratch (`scratchBytes`), for kernels
    /// that already run one GEMM per worker (attention).
    @inline(__always)
    public static func multiplyOnThisThread(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
                                            a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                                            beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int, scratch: UnsafeMutableRawPointer) {
        let run = kernel == .amx ? smol_gemm_amx : smol_gemm_bf16
        run(Int32(transA ? 1 : 0), Int32(transB ? 1 : 0), Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb),
            beta, c, Int32(ldc), scratch)
    }

    /// Packing buffers, one per worker, kept between calls and grown when a call needs more
    /// (a training step allocates nothing after its first).
    final class Scratch: @unchecked Sendable {
        static let shared = Scratch()
        private var pointers: [UnsafeMutableRawPointer] = []
        private var sizes: [Int] = []

        /// At least `count` buffers of at least `bytes` each.
        func buffers(count: Int, bytes: Int) -> [UnsafeMutableRawPointer] {
            while pointers.count < count {
                pointers.append(UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64))
                sizes.append(64)
            }
            for i in 0..<count where sizes[i] < bytes {
                pointers[i].deallocate()
                pointers[i] = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
                sizes[i] = bytes
            }
            return pointers
        }
    }
}
