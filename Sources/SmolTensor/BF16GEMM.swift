import Foundation
import SmolKernels

/// The bf16 GEMM kernels of Sources/SmolKernels, spread over `Parallel.threads`: C is cut into
/// column blocks (row blocks when it is taller than wide), one call of the kernel per block, each
/// with its own packing scratch. The cut depends only on the sizes and the thread count, so the
/// same inputs give the same bits.
public enum BF16GEMM {
    /// A bf16 GEMM kernel. All round the inputs to bf16 and sum in float32; they differ in speed
    /// and in the order of the float32 sums.
    public enum Kernel: String, Sendable {
        /// Intel AMX tiles (tdpbf16ps): a 32×32 block of C per step of 32 k-values.
        case amx
        /// AVX512-BF16 (vdpbf16ps): an 8×32 block of C in zmm registers.
        case avx512bf16 = "avx512-bf16"
        /// float32 FMAs (vfmadd231ps) on the bf16-rounded inputs: an 8×48 block of C in zmm
        /// registers. Where vdpbf16ps issues at half the FMA's rate (Intel without AMX).
        case avx512fma = "avx512-fma"

        typealias Function = @convention(c) (Int32, Int32, Int32, Int32, Int32, Float, UnsafePointer<Float>?, Int32,
                                             UnsafePointer<Float>?, Int32, Float, UnsafeMutablePointer<Float>?, Int32,
                                             UnsafeMutableRawPointer?) -> Void
        var function: Function {
            switch self {
            case .amx: smol_gemm_amx
            case .avx512bf16: smol_gemm_bf16
            case .avx512fma: smol_gemm_bf16_fma
            }
        }
        func scratchBytes(m: Int, n: Int, k: Int) -> Int {
            let (m, n, k) = (Int32(m), Int32(n), Int32(k))
            switch self {
            case .amx: return smol_gemm_amx_scratch_bytes(m, n, k)
            case .avx512bf16: return smol_gemm_bf16_scratch_bytes(m, n, k)
            case .avx512fma: return smol_gemm_bf16_fma_scratch_bytes(m, n, k)
            }
        }
        /// Rows of C per kernel block: a row split cuts C at multiples of it.
        var rowTile: Int { self == .amx ? 32 : 8 }
    }

    /// The kernel this process runs: AMX where the CPU and OS allow it, else the float32-FMA kernel
    /// on Intel and AVX512-BF16 elsewhere, else none. SMOL_BF16=avx512 or fma picks those two
    /// kernels; SMOL_BF16=off disables them all (the test suite's way to cover CPUs without them).
    public static let kernel: Kernel? = {
        let setting = ProcessInfo.processInfo.environment["SMOL_BF16"]
        if setting == "off" || smol_cpu_has_avx512_bf16() == 0 { return nil }
        if setting == "avx512" { return .avx512bf16 }
        if setting == "fma" { return .avx512fma }
        if smol_cpu_has_amx_bf16() != 0 { return .amx }
        return smol_cpu_prefers_fma_for_bf16() != 0 ? .avx512fma : .avx512bf16
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
        // Blocks are whole tiles (32 columns; 32 rows for AMX, 8 otherwise), at least two each.
        let rowTile = kernel.rowTile
        let byColumns = n >= m
        let parts = max(1, min(Parallel.threads, byColumns ? n / 64 : m / (2 * rowTile)))
        // After rounding, a block is at most a share plus one tile.
        let (bm, bn) = byColumns ? (m, n / parts + 32) : (m / parts + rowTile, n)
        let scratch = Scratch.shared.buffers(count: parts, bytes: kernel.scratchBytes(m: bm, n: bn, k: k))
        let run = kernel.function
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
        kernel!.scratchBytes(m: m, n: n, k: k)
    }

    /// The same GEMM on the calling thread with the caller's scratch (`scratchBytes`), for kernels
    /// that already run one GEMM per worker (attention).
    @inline(__always)
    public static func multiplyOnThisThread(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
                                            a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                                            beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int, scratch: UnsafeMutableRawPointer) {
        kernel!.function(Int32(transA ? 1 : 0), Int32(transB ? 1 : 0), Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb),
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
