import Foundation
import SmolTensor

/// Output projection fused with softmax cross-entropy, a chunk of rows at a time so only
/// [chunk, V] logits ever exist. The gradient is produced in the same pass because the loss is
/// the end of the graph: dlogits = scale · (softmax − onehot).
final class CrossEntropyHead {
    let vocab: Int, hidden: Int, chunkRows: Int
    private let logits: FloatBuffer
    private let rowLoss: FloatBuffer
    /// The last forward's per-row losses (weighted by the weights given; 0 for ignored rows).
    var tokenLosses: UnsafePointer<Float> { UnsafePointer(rowLoss.pointer) }

    init(vocab: Int, hidden: Int, maxRows: Int, maxChunkFloats: Int = 1 << 24) {
        self.vocab = vocab; self.hidden = hidden
        chunkRows = max(1, min(maxRows, maxChunkFloats / max(vocab, 1)))
        logits = FloatBuffer(count: chunkRows * vocab)
        rowLoss = FloatBuffer(count: maxRows)
    }

    /// x [N, C], W [V, C], targets [N] (−1 = ignored), weights [N] -> Σ weight · loss over counted rows.
    /// With gradients: dx [N, C] = scale · dlogits W, dW [V, C] += scale · dlogitsᵀ x, each row's
    /// dlogits weighted too.
    func forward(x: UnsafePointer<Float>, w: UnsafePointer<Float>, targets: UnsafePointer<Int32>, weights: UnsafePointer<Float>? = nil, n: Int,
                 scale: Float, dx: UnsafeMutablePointer<Float>?, dw: UnsafeMutablePointer<Float>?) -> (loss: Double, count: Int) {
        let V = vocab, C = hidden
        var total = 0.0, counted = 0
        var r0 = 0
        while r0 < n {
            let rows = min(chunkRows, n - r0)
            let z = logits.pointer
            Profiler.time("head.gemm") { BLAS.sgemm(transB: true, m: rows, n: V, k: C, a: x + r0 * C, lda: C, b: w, ldb: C, c: z, ldc: V) }
            let losses = rowLoss.pointer + r0
            Profiler.time("head.softmax") {
            Parallel.forEach(rows, minPerChunk: 4) { i in
                let row = z + i * V
                let target = Int(targets[r0 + i])
                guard target >= 0 else {
                    losses[i] = 0
                    if dx != nil { row.update(repeating: 0, count: V) }
                    return
                }
                let m = FastExp.max(row, V)
                let picked = row[target]
                let sum = FastExp.expShiftSum(row, row, V, shift: m)
                let weight = weights?[r0 + i] ?? 1
                losses[i] = (m + logf(sum) - picked) * weight
                if dx != nil {
                    let rowScale = scale * weight
                    let k = rowScale / sum
                    var j = 0
                    let vk = SIMD8<Float>(repeating: k)
                    while j + 8 <= V { VectorMath.store(VectorMath.load(row + j) * vk, row + j); j += 8 }
                    while j < V { row[j] *= k; j += 1 }
                    row[target] -= rowScale
                }
            }
            }
            for i in 0..<rows where targets[r0 + i] >= 0 { total += Double(losses[i]); counted += 1 }
            if let dx, let dw {
                Profiler.time("head.dx") { BLAS.sgemm(m: rows, n: C, k: V, a: z, lda: V, b: w, ldb: C, c: dx + r0 * C, ldc: C) }
                Profiler.time("head.dw") { BLAS.sgemm(transA: true, m: V, n: C, k: rows, a: z, lda: V, b: x + r0 * C, ldb: C, beta: 1, c: dw, ldc: C) }
            }
            r0 += rows
        }
        return (total, counted)
    }
}
