import SmolTensor

/// Bias of a linear layer (Qwen2's q/k/v projections): y = x Wᵀ + b.
enum Bias {
    /// y [N, out] += b [out] on every row
    static func forward(y: UnsafeMutablePointer<Float>, b: UnsafePointer<Float>, n: Int, outDim: Int) {
        Parallel.forEach(n, minPerChunk: 64) { i in VectorMath.add(b, into: y + i * outDim, outDim) }
    }

    /// db [out] += Σₙ dy [N, out]; rows are added in order, so the sum is the same at any thread count.
    static func backward(db: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>, n: Int, outDim: Int) {
        Parallel.chunks(outDim, minPerChunk: 64) { _, cols in
            for i in 0..<n {
                let row = dy + i * outDim
                for j in cols { db[j] += row[j] }
            }
        }
    }
}
