import Foundation
import SmolTensor

/// Causal grouped-query attention, computed block by block like FlashAttention so that no
/// [T, T] probability matrix is stored: the forward keeps only each row's log-sum-exp and the
/// backward recomputes the probabilities. Query row t sees keys keyStart[t] ... t, which is the
/// causal mask, narrowed to the row's own document when intra-document masking is on.
///
/// The query heads that share a KV head are packed into one matrix [rep · block, D], so each
/// query block is a few larger GEMMs against its keys instead of rep small ones.
final class Attention {
    let batch: Int, seqLen: Int, heads: Int, kvHeads: Int, headDim: Int
    let block: Int
    let scale: Float
    var rep: Int { heads / kvHeads }
    /// Per-task scratch (one task per (batch, KV head)): scores and their gradient
    /// [rep · block, T], and packed query-side rows [rep · block, D] ×3.
    private let scores: FloatBuffer, dScores: FloatBuffer, packs: FloatBuffer
    /// The GEMMs' input format (the model's `matmulPrecision`); softmax and its gradient stay float32.
    var precision: MatmulPrecision = .fp32
    /// Per-task packing scratch of the bf16 GEMMs (allocated on the first bf16 pass).
    private var bf16Scratch: [UnsafeMutableRawPointer] = []

    init(batch: Int, seqLen: Int, heads: Int, kvHeads: Int, headDim: Int, block: Int = 64) {
        self.batch = batch; self.seqLen = seqLen; self.heads = heads; self.kvHeads = kvHeads
        self.headDim = headDim; self.block = min(block, seqLen)
        scale = 1 / Float(headDim).squareRoot()
        let tasks = batch * kvHeads, rows = (heads / kvHeads) * self.block
        scores = FloatBuffer(count: tasks * rows * seqLen)
        dScores = FloatBuffer(count: tasks * rows * seqLen)
        packs = FloatBuffer(count: tasks * 3 * rows * headDim)
    }

    deinit { for p in bf16Scratch { p.deallocate() } }

    /// One of the task's GEMMs in `precision` (the caller holds OpenBLAS to one thread).
    @inline(__always)
    private func gemm(_ task: Int, transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
                      a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                      beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        if precision == .bf16 {
            BF16GEMM.multiplyOnThisThread(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                                          beta: beta, c: c, ldc: ldc, scratch: bf16Scratch[task])
        } else {
            BLAS.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
        }
    }

    /// Allocates the bf16 scratch once: every GEMM of a task has m, n ≤ max(rep · block, T, D).
    private func prepareScratch() {
        guard precision == .bf16, bf16Scratch.isEmpty else { return }
        let side = max(rep * block, seqLen, headDim)
        let bytes = BF16GEMM.scratchBytes(m: side, n: side, k: side)
        bf16Scratch = (0..<(batch * kvHeads)).map { _ in UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64) }
    }

    /// Copies rows (t0 + i, head g·rep + r) of x [B·T, H, D] to pack row r·bq + i (or back).
    @inline(__always)
    private func gather(_ x: UnsafePointer<Float>, into pack: UnsafeMutablePointer<Float>, b: Int, g: Int, t0: Int, bq: Int) {
        let D = headDim, H = heads
        for r in 0..<rep { for i in 0..<bq {
            (pack + (r * bq + i) * D).update(from: x + ((b * seqLen + t0 + i) * H + g * rep + r) * D, count: D)
        } }
    }

    @inline(__always)
    private func scatter(_ pack: UnsafePointer<Float>, to x: UnsafeMutablePointer<Float>, b: Int, g: Int, t0: Int, bq: Int) {
        let D = headDim, H = heads
        for r in 0..<rep { for i in 0..<bq {
            (x + ((b * seqLen + t0 + i) * H + g * rep + r) * D).update(from: pack + (r * bq + i) * D, count: D)
        } }
    }

    /// Columns of a score row (query t, keys from kLo) that the mask lets through: [lo, hi).
    @inline(__always)
    private func visibleColumns(b: Int, t: Int, kLo: Int, keyStart: UnsafePointer<Int32>) -> (lo: Int, hi: Int) {
        (Int(keyStart[b * seqLen + t]) - kLo, t - kLo + 1)
    }

    /// Zeroes a probability row outside its visible columns.
    @inline(__always)
    private func zeroMasked(_ row: UnsafeMutablePointer<Float>, lo: Int, hi: Int, len: Int) {
        if lo > 0 { row.update(repeating: 0, count: lo) }
        if hi < len { (row + hi).update(repeating: 0, count: len - hi) }
    }

    /// q [B·T, H, D], k/v [B·T, KV, D], keyStart [B·T] -> out [B·T, H, D], lse [B, H, T]
    func forward(out: UnsafeMutablePointer<Float>, lse: UnsafeMutablePointer<Float>,
                 q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                 keyStart: UnsafePointer<Int32>) {
        let T = seqLen, D = headDim, H = heads, KV = kvHeads, rows = rep * block
        prepareScratch()
        BLAS.singleThreaded {
            Parallel.tasks(batch * KV) { task in
                let b = task / KV, g = task % KV
                let s = scores.pointer + task * rows * T
                let qPack = packs.pointer + task * 3 * rows * D, oPack = qPack + rows * D
                var t0 = 0
                while t0 < T {
                    let t1 = min(t0 + block, T), bq = t1 - t0, m = rep * bq
                    let kLo = Int(keyStart[b * T + t0]), len = t1 - kLo
                    let kBase = k + ((b * T + kLo) * KV + g) * D, vBase = v + ((b * T + kLo) * KV + g) * D
                    gather(q, into: qPack, b: b, g: g, t0: t0, bq: bq)
                    gemm(task, transB: true, m: m, n: len, k: D, alpha: scale, a: qPack, lda: D,
                               b: kBase, ldb: KV * D, c: s, ldc: len)
                    for row in 0..<m {
                        let r = row / bq, t = t0 + row % bq, p = s + row * len
                        let (lo, hi) = visibleColumns(b: b, t: t, kLo: kLo, keyStart: keyStart)
                        let mx = FastExp.max(p + lo, hi - lo)
                        let sum = FastExp.expShiftSum(p + lo, p + lo, hi - lo, shift: mx)
                        let inv = 1 / sum
                        for j in lo..<hi { p[j] *= inv }
                        zeroMasked(p, lo: lo, hi: hi, len: len)
                        lse[(b * H + g * rep + r) * T + t] = mx + logf(sum)
                    }
                    gemm(task, m: m, n: D, k: len, a: s, lda: len, b: vBase, ldb: KV * D, c: oPack, ldc: D)
                    scatter(oPack, to: out, b: b, g: g, t0: t0, bq: bq)
                    t0 = t1
                }
            }
        }
    }

    /// Given dOut [B·T, H, D] and the forward's tensors, writes dq [B·T, H, D], dk/dv [B·T, KV, D].
    ///   P = exp(scale·QKᵀ − lse);  dV = Pᵀ dO;  dP = dO Vᵀ;  dS = P ⊙ (dP − rowsum(dO ⊙ O));
    ///   dQ = scale · dS K;  dK = scale · dSᵀ Q
    func backward(dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>,
                  dOut: UnsafePointer<Float>, out: UnsafePointer<Float>, lse: UnsafePointer<Float>,
                  q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                  keyStart: UnsafePointer<Int32>) {
        let T = seqLen, D = headDim, H = heads, KV = kvHeads, rows = rep * block
        prepareScratch()
        BLAS.singleThreaded {
            Parallel.tasks(batch * KV) { task in
                let b = task / KV, g = task % KV
                for t in 0..<T {
                    (dk + ((b * T + t) * KV + g) * D).update(repeating: 0, count: D)
                    (dv + ((b * T + t) * KV + g) * D).update(repeating: 0, count: D)
                }
                let p = scores.pointer + task * rows * T, dp = dScores.pointer + task * rows * T
                let qPack = packs.pointer + task * 3 * rows * D, dOPack = qPack + rows * D, dQPack = dOPack + rows * D
                var t0 = 0
                while t0 < T {
                    let t1 = min(t0 + block, T), bq = t1 - t0, m = rep * bq
                    let kLo = Int(keyStart[b * T + t0]), len = t1 - kLo
                    let kOffset = ((b * T + kLo) * KV + g) * D
                    gather(q, into: qPack, b: b, g: g, t0: t0, bq: bq)
                    gather(dOut, into: dOPack, b: b, g: g, t0: t0, bq: bq)
                    gemm(task, transB: true, m: m, n: len, k: D, alpha: scale, a: qPack, lda: D,
                               b: k + kOffset, ldb: KV * D, c: p, ldc: len)
                    for row in 0..<m {
                        let r = row / bq, t = t0 + row % bq, prow = p + row * len
                        let (lo, hi) = visibleColumns(b: b, t: t, kLo: kLo, keyStart: keyStart)
                        _ = FastExp.expShiftSum(prow + lo, prow + lo, hi - lo, shift: lse[(b * H + g * rep + r) * T + t])
                        zeroMasked(prow, lo: lo, hi: hi, len: len)
                    }
                    gemm(task, transA: true, m: len, n: D, k: m, a: p, lda: len, b: dOPack, ldb: D,
                               beta: 1, c: dv + kOffset, ldc: KV * D)
                    gemm(task, transB: true, m: m, n: len, k: D, a: dOPack, lda: D,
                               b: v + kOffset, ldb: KV * D, c: dp, ldc: len)
                    for row in 0..<m {
                        let r = row / bq, t = t0 + row % bq
                        let o = ((b * T + t) * H + g * rep + r) * D
                        let di = SIMD8<Float>(repeating: VectorMath.dot(dOut + o, out + o, D))
                        let prow = p + row * len, dprow = dp + row * len
                        var j = 0
                        while j + 8 <= len {
                            VectorMath.store(VectorMath.load(prow + j) * (VectorMath.load(dprow + j) - di), dprow + j)
                            j += 8
                        }
                        while j < len { dprow[j] = prow[j] * (dprow[j] - di[0]); j += 1 }
                    }
                    gemm(task, m: m, n: D, k: len, alpha: scale, a: dp, lda: len, b: k + kOffset, ldb: KV * D,
                               c: dQPack, ldc: D)
                    scatter(dQPack, to: dq, b: b, g: g, t0: t0, bq: bq)
                    gemm(task, transA: true, m: len, n: D, k: m, alpha: scale, a: dp, lda: len, b: qPack,
                               ldb: D, beta: 1, c: dk + kOffset, ldc: KV * D)
                    t0 = t1
                }
            }
        }
    }
}
