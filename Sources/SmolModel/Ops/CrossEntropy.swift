import Foundation
import SmolTensor

/// Output projection fused with softmax cross-entropy, a chunk of rows at a time so only
/// [chunk, V] logits ever exist. The gradient is produced in the same pass because the loss is
/// the end of the graph: dlogits = scale · (softmax − onehot).
///
/// Vocabulary-parallel (`shard` set): this rank's W holds the head's rows offset ..< offset + V.
/// Each row's maximum is gathered from every rank, its Σ exp(z − max) and target logit summed
/// over them, so each rank's softmax slice is the whole softmax's; dx is a partial sum, summed over
/// the ranks, and dW is this rank's rows of the whole gradient.
final class CrossEntropyHead {
    let vocab: Int, hidden: Int, chunkRows: Int
    private let logits: FloatBuffer
    private let rowLoss: FloatBuffer

    /// A rank's place in a vocabulary-parallel head, and the group's collectives.
    struct VocabShard {
        let offset: Int, ranks: Int, rank: Int
        /// Each rank's block of `buffer` (the ranges, in rank order) copied to every rank.
        let allGather: (_ buffer: UnsafeMutablePointer<Float>, _ blocks: [Range<Int>]) -> Void
        /// buffer[i] = Σ over the ranks, in place.
        let sum: (_ buffer: UnsafeMutablePointer<Float>, _ count: Int) -> Void
    }
    var shard: VocabShard?
    /// [ranks · chunkRows] row maxima, then [2 · chunkRows] (Σ exp, target logit) per row.
    private var shardScratch: FloatBuffer?
    /// The last forward's per-row losses (weighted by the weights given; 0 for ignored rows).
    var tokenLosses: UnsafePointer<Float> { UnsafePointer(rowLoss.pointer) }
    /// Distillation: the teacher's probabilities for a chunk [chunkRows, V], Σ p log p per row, and
    /// the last forward's Σ over counted rows of weight · CE and weight · KL (allocated on first use).
    private var teacherRows: FloatBuffer?, teacherPlogp: FloatBuffer?, distillRowSums: FloatBuffer?
    private(set) var distillSums = (ce: 0.0, kl: 0.0)
    /// The GEMMs' input format (the model's `matmulPrecision`); the softmax and loss stay float32.
    var precision: MatmulPrecision = .fp32

    init(vocab: Int, hidden: Int, maxRows: Int, maxChunkFloats: Int = 1 << 25) {
        self.vocab = vocab; self.hidden = hidden
        chunkRows = max(1, min(maxRows, maxChunkFloats / max(vocab, 1)))
        logits = FloatBuffer(count: chunkRows * vocab)
        rowLoss = FloatBuffer(count: maxRows)
    }

    /// x [N, C], W [V, C], targets [N] (−1 = ignored), weights [N] -> Σ weight · loss over counted rows.
    /// With gradients: dx [N, C] = scale · dlogits W, dW [V, C] += scale · dlogitsᵀ x, each row's
    /// dlogits weighted too.
    /// With `distill` the row loss is DistillationLoss's mix of CE and the teacher's KL (whole head only).
    func forward(x: UnsafePointer<Float>, w: UnsafePointer<Float>, targets: UnsafePointer<Int32>, weights: UnsafePointer<Float>? = nil, n: Int,
                 scale: Float, dx: UnsafeMutablePointer<Float>?, dw: UnsafeMutablePointer<Float>?, distill: DistillationTarget? = nil) -> (loss: Double, count: Int) {
        if let shard { return forwardSharded(shard, x: x, w: w, targets: targets, weights: weights, n: n, scale: scale, dx: dx, dw: dw) }
        let V = vocab, C = hidden
        var total = 0.0, counted = 0
        var ceSum = 0.0, klSum = 0.0
        if distill != nil && teacherRows == nil {
            teacherRows = FloatBuffer(count: chunkRows * V); teacherPlogp = FloatBuffer(count: chunkRows)
            distillRowSums = FloatBuffer(count: 2 * chunkRows)
        }
        let rowCE = distillRowSums?.pointer   // per row: weight · CE, weight · KL
        var r0 = 0
        while r0 < n {
            let rows = min(chunkRows, n - r0)
            let z = logits.pointer
            Profiler.time("head.gemm") { GEMM.multiply(precision, transB: true, m: rows, n: V, k: C, a: x + r0 * C, lda: C, b: w, ldb: C, c: z, ldc: V) }
            let losses = rowLoss.pointer + r0
            if let distill { Profiler.time("head.teacher") { distill.fill(r0, rows, teacherRows!.pointer, teacherPlogp!.pointer) } }
            Profiler.time("head.softmax") {
            Parallel.forEach(rows, minPerChunk: 4) { i in
                let row = z + i * V
                let target = Int(targets[r0 + i])
                guard target >= 0 else {
                    losses[i] = 0
                    if dx != nil { row.update(repeating: 0, count: V) }
                    return
                }
                if let distill {
                    let weight = weights?[r0 + i] ?? 1, a = distill.alpha, T = distill.temperature
                    let (ce, kl) = DistillationLoss.row(row, teacherRows!.pointer + i * V, plogp: teacherPlogp!.pointer[i], count: V, target: target,
                                                        alpha: a, temperature: T, gradScale: dx != nil ? scale * weight : nil)
                    rowCE![2 * i] = ce * weight; rowCE![2 * i + 1] = kl * weight
                    losses[i] = ((1 - a) * ce + a * T * T * kl) * weight
                    return
                }
                let m = FastExp.max(row, V)
                let picked = row[target]
                let sum = FastExp.expShiftSum(row, row, V, shift: m)
                let weight = weights?[r0 + i] ?? 1
                losses[i] = (m + logf(sum) - picked) * weight
                if dx != nil {
                    let rowScale = scale * weight
                    CrossEntropyHead.scale(row, V, by: rowScale / sum)
                    row[target] -= rowScale
                }
            }
            }
            for i in 0..<rows where targets[r0 + i] >= 0 {
                total += Double(losses[i]); counted += 1
                if let rowCE, distill != nil { ceSum += Double(rowCE[2 * i]); klSum += Double(rowCE[2 * i + 1]) }
            }
            if let dx, let dw {
                Profiler.time("head.dx") { GEMM.multiply(precision, m: rows, n: C, k: V, a: z, lda: V, b: w, ldb: C, c: dx + r0 * C, ldc: C) }
                Profiler.time("head.dw") { GEMM.multiply(precision, transA: true, m: V, n: C, k: rows, a: z, lda: V, b: x + r0 * C, ldb: C, beta: 1, c: dw, ldc: C) }
            }
            r0 += rows
        }
        distillSums = (ceSum, klSum)
        return (total, counted)
    }

    /// Logits [rows, V] of rows r0 ..< r0 + rows of x [N, C] against W [V, C] (a teacher's head).
    func logits(x: UnsafePointer<Float>, w: UnsafePointer<Float>, rows r0: Range<Int>, into z: UnsafeMutablePointer<Float>) {
        GEMM.multiply(precision, transB: true, m: r0.count, n: vocab, k: hidden, a: x + r0.lowerBound * hidden, lda: hidden, b: w, ldb: hidden, c: z, ldc: vocab)
    }

    /// row[0..<n] *= k: exp(z − max) becomes dlogits' softmax part, scale · weight · p.
    @inline(__always)
    static func scale(_ row: UnsafeMutablePointer<Float>, _ n: Int, by k: Float) {
        var j = 0
        let vk = SIMD8<Float>(repeating: k)
        while j + 8 <= n { VectorMath.store(VectorMath.load(row + j) * vk, row + j); j += 8 }
        while j < n { row[j] *= k; j += 1 }
    }

    /// The vocabulary-parallel forward (see the type's comment); every rank of the group calls it alike.
    private func forwardSharded(_ sh: VocabShard, x: UnsafePointer<Float>, w: UnsafePointer<Float>, targets: UnsafePointer<Int32>,
                                weights: UnsafePointer<Float>?, n: Int, scale: Float, dx: UnsafeMutablePointer<Float>?,
                                dw: UnsafeMutablePointer<Float>?) -> (loss: Double, count: Int) {
        let V = vocab, C = hidden
        if shardScratch == nil { shardScratch = FloatBuffer(count: (sh.ranks + 2) * chunkRows) }
        let maxima = shardScratch!.pointer, stats = shardScratch!.pointer + sh.ranks * chunkRows
        var total = 0.0, counted = 0
        var r0 = 0
        while r0 < n {
            let rows = min(chunkRows, n - r0)
            let z = logits.pointer
            Profiler.time("head.gemm") { GEMM.multiply(precision, transB: true, m: rows, n: V, k: C, a: x + r0 * C, lda: C, b: w, ldb: C, c: z, ldc: V) }
            // Row maxima from every rank: [ranks, rows].
            Parallel.forEach(rows, minPerChunk: 4) { i in maxima[sh.rank * rows + i] = FastExp.max(z + i * V, V) }
            Profiler.time("tp.head") { sh.allGather(maxima, (0..<sh.ranks).map { $0 * rows ..< ($0 + 1) * rows }) }
            // Σ exp(z − max) over this rank's columns, and the target's logit where this rank holds it.
            Profiler.time("head.softmax") {
                Parallel.forEach(rows, minPerChunk: 4) { i in
                    var m = maxima[i]
                    for r in 1..<sh.ranks { m = max(m, maxima[r * rows + i]) }
                    maxima[i] = m
                    let row = z + i * V, t = Int(targets[r0 + i]) - sh.offset
                    stats[2 * i + 1] = t >= 0 && t < V ? row[t] : 0
                    stats[2 * i] = FastExp.expShiftSum(row, row, V, shift: m)
                }
            }
            Profiler.time("tp.head") { sh.sum(stats, 2 * rows) }
            let losses = rowLoss.pointer + r0
            Profiler.time("head.softmax") {
                Parallel.forEach(rows, minPerChunk: 4) { i in
                    let row = z + i * V
                    guard targets[r0 + i] >= 0 else {
                        losses[i] = 0
                        if dx != nil { row.update(repeating: 0, count: V) }
                        return
                    }
                    let sum = stats[2 * i], weight = weights?[r0 + i] ?? 1
                    losses[i] = (maxima[i] + logf(sum) - stats[2 * i + 1]) * weight
                    if dx != nil {
                        let rowScale = scale * weight
                        CrossEntropyHead.scale(row, V, by: rowScale / sum)
                        let t = Int(targets[r0 + i]) - sh.offset
                        if t >= 0 && t < V { row[t] -= rowScale }
                    }
                }
            }
            for i in 0..<rows where targets[r0 + i] >= 0 { total += Double(losses[i]); counted += 1 }
            if let dx, let dw {
                Profiler.time("head.dx") { GEMM.multiply(precision, m: rows, n: C, k: V, a: z, lda: V, b: w, ldb: C, c: dx + r0 * C, ldc: C) }
                Profiler.time("tp.head") { sh.sum(dx + r0 * C, rows * C) }
                Profiler.time("head.dw") { GEMM.multiply(precision, transA: true, m: V, n: C, k: rows, a: z, lda: V, b: x + r0 * C, ldb: C, beta: 1, c: dw, ldc: C) }
            }
            r0 += rows
        }
        return (total, counted)
    }
}
