import Foundation
import SmolKernels

/// The number format a GEMM reads its inputs in. Products are summed in float32 either way, and
/// outputs are float32: `bf16` rounds both operands to bfloat16 (nearest even) as it packs them,
/// which is what PyTorch's bf16 autocast does to a Linear's input and weight. Which bf16 kernel
/// runs is `BF16GEMM.kernel`.
public enum MatmulPrecision: String, Codable, Sendable, CaseIterable {
    case fp32, bf16

    /// Whether this process can run bf16 GEMMs (`BF16GEMM.kernel` is not nil).
    public static var bf16Available: Bool { BF16GEMM.kernel != nil }

    /// Why bf16 GEMMs are not available here, in words; nil when they are.
    public static var bf16Unavailable: String? { BF16GEMM.unavailableReason }

    /// The precision this process will actually run for a requested one, and a one-line notice
    /// when it falls back to fp32.
    public static func resolve(_ requested: MatmulPrecision) -> (precision: MatmulPrecision, notice: String?) {
        guard requested == .bf16, let why = bf16Unavailable else { return (requested, nil) }
        return (.fp32, "notice: precision bf16 requested, but \(why): the GEMMs run in fp32")
    }
}

/// One GEMM entry point for the model's matmuls: OpenBLAS's sgemm in fp32, our AVX512-BF16
/// kernel in bf16. Same arguments as `BLAS.sgemm`.
public enum GEMM {
    @inline(__always)
    public static func multiply(_ precision: MatmulPrecision, transA: Bool = false, transB: Bool = false,
                                m: Int, n: Int, k: Int, alpha: Float = 1,
                                a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                                beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        switch precision {
        case .fp32:
            BLAS.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                       beta: beta, c: c, ldc: ldc)
        case .bf16:
            BF16GEMM.multiply(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                              beta: beta, c: c, ldc: ldc)
        }
    }
}
