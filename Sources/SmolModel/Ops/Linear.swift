import SmolTensor

/// Bias-free linear layer with Hugging Face weight layout W [out, in]: y = x Wᵀ. `precision` is the
/// GEMMs' input format (bf16: x, W, dy rounded to bfloat16, sums and outputs float32).
enum Linear {
    /// x [N, in], W [out, in] -> y [N, out]  (beta = 1 adds into y, e.g. a residual)
    static func forward(y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, w: UnsafePointer<Float>,
                        n: Int, inDim: Int, outDim: Int, accumulate: Bool = false, precision: MatmulPrecision = .fp32) {
        GEMM.multiply(precision, transB: true, m: n, n: outDim, k: inDim, a: x, lda: inDim, b: w, ldb: inDim,
                   beta: accumulate ? 1 : 0, c: y, ldc: outDim)
    }

    /// dx [N, in] (+)= dy [N, out] · W [out, in];  dW [out, in] += dyᵀ · x
    static func backward(dx: UnsafeMutablePointer<Float>?, dw: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>,
                         x: UnsafePointer<Float>, w: UnsafePointer<Float>, n: Int, inDim: Int, outDim: Int,
                         accumulateDx: Bool = false, precision: MatmulPrecision = .fp32) {
        if let dx {
            GEMM.multiply(precision, m: n, n: inDim, k: outDim, a: dy, lda: outDim, b: w, ldb: inDim,
                       beta: accumulateDx ? 1 : 0, c: dx, ldc: inDim)
        }
        GEMM.multiply(precision, transA: true, m: outDim, n: inDim, k: n, a: dy, lda: outDim, b: x, ldb: inDim,
                   beta: 1, c: dw, ldc: inDim)
    }
}
