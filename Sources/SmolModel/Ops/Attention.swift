import Foundation
import SmolTensor

/// Causal grouped-query attention, computed block by block like FlashAttention so that no
/// [T, T] probability matrix is stored: the forward keeps only each row's log-sum-exp and the
/// backward recomputes the probabilities. Query row t sees keys keyStart[t] ... t, which is the
/// causal mask, narrowed to the row's own document when intra-document masking is on.
final class Attention {
    let batch: Int, seqLen: Int, heads: Int, kvHeads: Int, headDim: Int
    let block: Int
    let scale: Float
    /// Per-task scratch: scores and their gradient, [block, T] each.
    private let scores: FloatBuffer, dScores: FloatBuffer

    init(batch: Int, seqLen: Int, heads: Int, kvHeads: Int, headDim: Int, block: Int = 64) {
        self.batch = batch; self.seqLen = seqLen; self.heads = heads; self.kvHeads = kvHeads
        self.headDim = headDim; self.block = min(block, seqLen)
        scale = 1 / Float(headDim).squareRoot()
        let tasks = batch * kvHeads
        scores = FloatBuffer(count: tasks * self.block * seqLen)
        dScores = FloatBuffer(count: tasks * self.block * seqLen)
    }

    /// q [B·T, H, D], k/v [B·T, KV, D], keyStart [B·T] -> out [B·T, H, D], lse [B, H, T]
    func forward(out: UnsafeMutablePointer<Float>, lse: UnsafeMutablePointer<Float>,
                 q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                 keyStart: UnsafePointer<Int32>) {
        let T = seqLen, D = headDim, H = heads, KV = kvHeads, rep = H / KV
        BLAS.singleThreaded {
            Parallel.tasks(batch * KV) { task in
                let b = task / KV, g = task % KV
                let s = scores.pointer + task * block * T
                for h in g * rep..<(g + 1) * rep {
                    var t0 = 0
                    while t0 < T {
                        let t1 = min(t0 + block, T), bq = t1 - t0
                        let kLo = Int(keyStart[b * T + t0]), len = t1 - kLo
                        let qBlock = q + ((b * T + t0) * H + h) * D
                        let kBase = k + ((b * T + kLo) * KV + g) * D, vBase = v + ((b * T + kLo) * KV + g) * D
                        BLAS.sgemm(transB: true, m: bq, n: len, k: D, alpha: scale, a: qBlock, lda: H * D,
                                   b: kBase, ldb: KV * D, c: s, ldc: len)
                        for i in 0..<bq {
                            let t = t0 + i, row = s + i * len
                            let lo = Int(keyStart[b * T + t]) - kLo, hi = t - kLo + 1  // valid columns [lo, hi)
                            let m = FastExp.max(row + lo, hi - lo)
                            let sum = FastExp.expShiftSum(row + lo, row + lo, hi - lo, shift: m)
                            let inv = 1 / sum
                            for j in lo..<hi { row[j] *= inv }
                            if lo > 0 { row.update(repeating: 0, count: lo) }
                            if hi < len { (row + hi).update(repeating: 0, count: len - hi) }
                            lse[(b * H + h) * T + t] = m + logf(sum)
                        }
                        BLAS.sgemm(m: bq, n: D, k: len, a: s, lda: len, b: vBase, ldb: KV * D,
                                   c: out + ((b * T + t0) * H + h) * D, ldc: H * D)
                        t0 = t1
                    }
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
        let T = seqLen, D = headDim, H = heads, KV = kvHeads, rep = H / KV
        BLAS.singleThreaded {
            Parallel.tasks(batch * KV) { task in
                let b = task / KV, g = task % KV
                for t in 0..<T {
                    (dk + ((b * T + t) * KV + g) * D).update(repeating: 0, count: D)
                    (dv + ((b * T + t) * KV + g) * D).update(repeating: 0, count: D)
                }
                let p = scores.pointer + task * block * T, dp = dScores.pointer + task * block * T
                for h in g * rep..<(g + 1) * rep {
                    var t0 = 0
                    while t0 < T {
                        let t1 = min(t0 + block, T), bq = t1 - t0
                        let kLo = Int(keyStart[b * T + t0]), len = t1 - kLo
                        let rowOffset = ((b * T + t0) * H + h) * D
                        let kOffset = ((b * T + kLo) * KV + g) * D
                        BLAS.sgemm(transB: true, m: bq, n: len, k: D, alpha: scale, a: q + rowOffset, lda: H * D,
                                   b: k + kOffset, ldb: KV * D, c: p, ldc: len)
                        for i in 0..<bq {
                            let t = t0 + i, row = p + i * len
                            let lo = Int(keyStart[b * T + t]) - kLo, hi = t - kLo + 1
                            let l = lse[(b * H + h) * T + t]
                            _ = FastExp.expShiftSum(row + lo, row + lo, hi - lo, shift: l)
                            if lo > 0 { row.update(repeating: 0, count: lo) }
                            if hi < len { (row + hi).update(repeating: 0, count: len - hi) }
                        }
                        BLAS.sgemm(transA: true, m: len, n: D, k: bq, a: p, lda: len, b: dOut + rowOffset, ldb: H * D,
                                   beta: 1, c: dv + kOffset, ldc: KV * D)
                        BLAS.sgemm(transB: true, m: bq, n: len, k: D, a: dOut + rowOffset, lda: H * D,
                                   b: v + kOffset, ldb: KV * D, c: dp, ldc: len)
                        for i in 0..<bq {
                            let o = rowOffset + i * H * D
                            let di = VectorMath.dot(dOut + o, out + o, D)
                            let prow = p + i * len, dprow = dp + i * len
                            var j = 0
                            let vdi = SIMD8<Float>(repeating: di)
                            while j + 8 <= len {
                                VectorMath.store(VectorMath.load(prow + j) * (VectorMath.load(dprow + j) - vdi), dprow + j)
                                j += 8
                            }
                            while j < len { dprow[j] = prow[j] * (dprow[j] - di); j += 1 }
                        }
                        BLAS.sgemm(m: bq, n: D, k: len, alpha: scale, a: dp, lda: len, b: k + kOffset, ldb: KV * D,
                                   c: dq + rowOffset, ldc: H * D)
                        BLAS.sgemm(transA: true, m: len, n: D, k: bq, alpha: scale, a: dp, lda: len, b: q + rowOffset,
                                   ldb: H * D, beta: 1, c: dk + kOffset, ldc: KV * D)
                        t0 = t1
                    }
                }
            }
        }
    }
}
