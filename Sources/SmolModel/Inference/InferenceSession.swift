import Foundation
import SmolKernels
import SmolTensor

/// How an `InferenceSession` stores cached keys and values. f16 halves the bytes that grow with
/// the context (what long-context decoding reads per token), as llama.cpp's default cache does;
/// its logit error against f32 is measured in bench/RESULTS.md.
public enum KVCacheFormat: String, Sendable, CaseIterable {
    case f32, f16
}

/// Incremental inference with a KV cache: `feed` runs new tokens through the model at the
/// positions after those already cached, in chunks (batched prefill: every matmul is a GEMM over
/// the chunk's tokens), and returns the logits the caller asks for. Decoding is `feed([token])`.
///
/// Keys and values are cached after RoPE, per layer as [capacity, KV, D], so attention for a new
/// query reads them with a plain stride; `truncate(to:)` rewinds the cache to a shared prefix.
/// With an f16 cache a decoded token's attention streams the cache once per KV head for all its
/// query heads (SmolKernels' f16_attention.c); longer feeds convert the cached rows to float32
/// first and take the GEMM path.
public final class InferenceSession {
    public let model: LlamaModel
    public let capacity: Int
    public let chunk: Int
    public private(set) var length = 0
    /// When true, one-token feeds take the same GEMM path as longer ones (no quantised decode
    /// kernels, no dot-product attention), so a token's logits do not depend on how many tokens
    /// were fed with it. Scoring sets it; generation keeps the fast path.
    public var rowInvariant = false

    public let kvCache: KVCacheFormat
    /// The input format of the projections' and the head's GEMMs for feeds of more than one token
    /// (prefill, and every feed when `rowInvariant`): bf16 rounds their inputs as training's
    /// `precision: bf16` does. Single-token decoding and attention stay as they are. Resolved
    /// (`MatmulPrecision.resolve`): fp32 on a CPU without the bf16 kernels; the caller says so.
    public let prefillPrecision: MatmulPrecision
    /// The cache, per layer [capacity, KV, D]: float32 buffers, or float16 ones (the other empty).
    let keys: [FloatBuffer], values: [FloatBuffer]
    private let keys16: [UnsafeMutablePointer<UInt16>], values16: [UnsafeMutablePointer<UInt16>]
    /// An f16 cache's rows 0 ..< total of one layer as float32, for feeds of more than one token.
    private var wideKeys: FloatBuffer?, wideValues: FloatBuffer?
    var decodeWeights: DecodeWeights? { rowInvariant ? nil : model.decodeWeights }
    private let x: FloatBuffer, h: FloatBuffer, rstd: FloatBuffer, q: FloatBuffer, k: FloatBuffer, v: FloatBuffer
    private let attn: FloatBuffer, gate: FloatBuffer, up: FloatBuffer, scores: FloatBuffer
    private let qRstd: FloatBuffer, kRstd: FloatBuffer
    private var positions: [Int32]
    private var tokenIds: [Int32]

    public init(model: LlamaModel, capacity: Int? = nil, chunk: Int = 128, kvCache: KVCacheFormat = .f32,
                prefillPrecision: MatmulPrecision = .fp32) {
        let c = model.config
        self.model = model
        let cap = min(capacity ?? c.maxPositionEmbeddings, c.maxPositionEmbeddings)
        self.capacity = cap
        self.chunk = chunk
        self.kvCache = kvCache
        self.prefillPrecision = MatmulPrecision.resolve(prefillPrecision).precision
        let layers = kvCache == .f32 ? c.numHiddenLayers : 0, halfLayers = kvCache == .f16 ? c.numHiddenLayers : 0
        keys = (0..<layers).map { _ in FloatBuffer(count: cap * c.kvDim) }
        values = (0..<layers).map { _ in FloatBuffer(count: cap * c.kvDim) }
        keys16 = (0..<halfLayers).map { _ in UnsafeMutablePointer<UInt16>.allocate(capacity: cap * c.kvDim) }
        values16 = (0..<halfLayers).map { _ in UnsafeMutablePointer<UInt16>.allocate(capacity: cap * c.kvDim) }
        x = FloatBuffer(count: chunk * c.hiddenSize); h = FloatBuffer(count: chunk * c.hiddenSize)
        rstd = FloatBuffer(count: chunk)
        q = FloatBuffer(count: chunk * c.qDim); k = FloatBuffer(count: chunk * c.kvDim); v = FloatBuffer(count: chunk * c.kvDim)
        attn = FloatBuffer(count: chunk * c.qDim)
        qRstd = FloatBuffer(count: chunk * c.numAttentionHeads); kRstd = FloatBuffer(count: chunk * c.numKeyValueHeads)
        gate = FloatBuffer(count: chunk * c.intermediateSize); up = FloatBuffer(count: chunk * c.intermediateSize)
        scores = FloatBuffer(count: c.numAttentionHeads * chunk * cap)
        positions = [Int32](repeating: 0, count: chunk); tokenIds = positions
    }

    deinit {
        for p in keys16 { p.deallocate() }
        for p in values16 { p.deallocate() }
    }

    /// Writes `rows` keys and values (float32 [rows, KV·D]) into layer l's cache at `row`.
    private func store(layer l: Int, row: Int, keys k: UnsafePointer<Float>, values v: UnsafePointer<Float>, rows: Int) {
        let w = model.config.kvDim
        if kvCache == .f32 {
            (keys[l].pointer + row * w).update(from: k, count: rows * w)
            (values[l].pointer + row * w).update(from: v, count: rows * w)
        } else {
            smol_f32_to_f16(k, keys16[l] + row * w, rows * w)
            smol_f32_to_f16(v, values16[l] + row * w, rows * w)
        }
    }

    /// Layer l's cached rows 0 ..< total as float32 [total, KV·D]: the cache itself, or (f16) a
    /// conversion into a buffer shared by the layers.
    private func floatCache(layer l: Int, total: Int) -> (keys: UnsafeMutablePointer<Float>, values: UnsafeMutablePointer<Float>) {
        if kvCache == .f32 { return (keys[l].pointer, values[l].pointer) }
        let w = model.config.kvDim
        if wideKeys == nil { wideKeys = FloatBuffer(count: capacity * w); wideValues = FloatBuffer(count: capacity * w) }
        let kf = wideKeys!.pointer, vf = wideValues!.pointer, k16 = keys16[l], v16 = values16[l]
        Parallel.chunks(total, minPerChunk: 64) { _, rows in
            smol_f16_to_f32(k16 + rows.lowerBound * w, kf + rows.lowerBound * w, rows.count * w)
            smol_f16_to_f32(v16 + rows.lowerBound * w, vf + rows.lowerBound * w, rows.count * w)
        }
        return (kf, vf)
    }

    /// Forgets every cached token.
    public func reset() { length = 0 }

    /// Keeps only the first `n` cached tokens (to reuse a shared prompt prefix).
    public func truncate(to n: Int) { length = min(max(n, 0), length) }

    private func weight(_ name: String) -> UnsafeMutablePointer<Float> { model.parameters.pointer(name, in: model.parameters.values) }

    /// Runs `tokens` after the cached ones. Returns the logits [V] of the last token, or with
    /// `allLogits` those of every fed token [n, V].
    @discardableResult
    public func feed(_ tokens: [Int32], allLogits: Bool = false) throws -> [Float] {
        let c = model.config, V = c.vocabSize
        guard !tokens.isEmpty else { return [] }
        guard length + tokens.count <= capacity else {
            throw ModelError.sequenceTooLong(length: length + tokens.count, max: capacity)
        }
        for t in tokens where t < 0 || Int(t) >= V { throw ModelError.tokenOutOfRange(id: t, vocab: V) }
        var out = [Float](repeating: 0, count: allLogits ? tokens.count * V : V)
        var start = 0
        while start < tokens.count {
            let n = min(chunk, tokens.count - start)
            for i in 0..<n { tokenIds[i] = tokens[start + i]; positions[i] = Int32(length + i) }
            forwardChunk(n: n)
            // Logits: x holds the final-normed hidden states of the chunk.
            out.withUnsafeMutableBufferPointer { o in
                if allLogits {
                    head(rows: n, from: x.pointer, into: o.baseAddress! + start * V)
                } else if start + n == tokens.count {
                    head(rows: 1, from: x.pointer + (n - 1) * c.hiddenSize, into: o.baseAddress!)
                }
            }
            length += n
            start += n
        }
        return out
    }

    /// Runs several continuations ("branches") of the cached prefix in one forward pass and
    /// returns each branch's logits [count, V]. Every linear layer is one GEMM over all branches'
    /// tokens; attention runs per branch against the prefix and the branch's own tokens, laid out
    /// exactly as if the branch were fed alone, so a branch's logits do not depend on its
    /// companions. The cache is left holding only the prefix.
    public func feedBranches(_ branches: [[Int32]]) throws -> [[Float]] {
        let c = model.config, V = c.vocabSize
        let total = branches.reduce(0) { $0 + $1.count }
        guard total <= chunk else { throw ModelError.sequenceTooLong(length: total, max: chunk) }
        guard let longest = branches.map(\.count).max(), longest > 0 else { return branches.map { _ in [] } }
        guard length + longest <= capacity else { throw ModelError.sequenceTooLong(length: length + longest, max: capacity) }
        var spans: [(offset: Int, count: Int)] = []
        var row = 0
        for b in branches {
            for (i, t) in b.enumerated() {
                guard t >= 0, Int(t) < V else { throw ModelError.tokenOutOfRange(id: t, vocab: V) }
                tokenIds[row + i] = t; positions[row + i] = Int32(length + i)
            }
            spans.append((row, b.count)); row += b.count
        }
        forwardChunk(n: total, branches: spans)
        var logits = [Float](repeating: 0, count: total * V)
        logits.withUnsafeMutableBufferPointer { head(rows: total, from: x.pointer, into: $0.baseAddress!) }
        return spans.map { Array(logits[$0.offset * V ..< ($0.offset + $0.count) * V]) }
    }

    /// The GEMM input format for `rows` rows of a feed: `prefillPrecision` past one row (or when
    /// rows must not depend on how many were fed together), else fp32.
    private func precision(rows: Int) -> MatmulPrecision {
        rows > 1 || rowInvariant ? prefillPrecision : .fp32
    }

    /// logits [rows, V] = x [rows, C] · Wᵀ, W the (tied or separate) output matrix [V, C]
    private func head(rows: Int, from x: UnsafePointer<Float>, into logits: UnsafeMutablePointer<Float>) {
        let c = model.config
        if rows == 1, let m = decodeWeights?.head {
            m.multiply(x, into: logits)
            return
        }
        let w = weight(c.tieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight")
        GEMM.multiply(precision(rows: rows), transB: true, m: rows, n: c.vocabSize, k: c.hiddenSize,
                      a: x, lda: c.hiddenSize, b: w, ldb: c.hiddenSize, c: logits, ldc: c.vocabSize)
    }

    /// One forward pass over tokenIds[0..<n]. Without `branches` the rows follow the cache in
    /// order; with them each span is a separate continuation of the cache.
    private func forwardChunk(n: Int, branches: [(offset: Int, count: Int)]? = nil) {
        let cfg = model.config, C = cfg.hiddenSize
        tokenIds.withUnsafeBufferPointer { ids in
            Embedding.forward(out: x.pointer, tokens: ids.baseAddress!, table: weight("model.embed_tokens.weight"), n: n, c: C)
        }
        // The residual stream x is updated in place; h serves both norms, gate holds the SwiGLU product.
        let b = BlockBuffers(norm1: h.pointer, rstd1: rstd.pointer, q: q.pointer, k: k.pointer, v: v.pointer,
                             qRaw: nil, kRaw: nil, qRstd: qRstd.pointer, kRstd: kRstd.pointer, attnOut: attn.pointer,
                             mid: x.pointer, norm2: h.pointer, rstd2: rstd.pointer, gate: gate.pointer, up: up.pointer, swiglu: gate.pointer)
        let projections = DecodeProjections(model: model, decode: n == 1 ? decodeWeights : nil, precision: precision(rows: n))
        positions.withUnsafeBufferPointer { pos in
            for l in 0..<cfg.numHiddenLayers {
                model.blockForward(layer: l, n: n, x: x.pointer, out: x.pointer, buffers: b, positions: pos.baseAddress!,
                                   projections: projections) {
                    if let branches {
                        for span in branches {
                            // The branch's keys and values go right after the prefix, as if fed alone.
                            store(layer: l, row: length, keys: k.pointer + span.offset * cfg.kvDim, values: v.pointer + span.offset * cfg.kvDim,
                                  rows: span.count)
                            attention(layer: l, n: span.count, rowOffset: span.offset)
                        }
                    } else {
                        store(layer: l, row: length, keys: k.pointer, values: v.pointer, rows: n)
                        attention(layer: l, n: n)
                    }
                }
            }
        }
        RMSNorm.forward(y: x.pointer, rstd: rstd.pointer, x: x.pointer, w: weight("model.norm.weight"), n: n, c: C, eps: Float(cfg.rmsNormEps))
    }

    /// attn [n, H, D] for the n new queries q [n, H, D] (rows rowOffset ..< rowOffset + n of the
    /// chunk) against the cache rows 0 ..< length + n.
    /// Per head: scores = q_h K_gᵀ · scale (one GEMM, strided views of q and the cache), a causal
    /// softmax per row, then attn_h = P V_g (a second GEMM).
    private func attention(layer l: Int, n: Int, rowOffset: Int = 0) {
        let cfg = model.config, H = cfg.numAttentionHeads, KV = cfg.numKeyValueHeads, D = cfg.headDim
        let total = length + n, rep = H / KV, past = length
        let scale = 1 / Float(D).squareRoot()
        if n == 1 && !rowInvariant && kvCache == .f16 {
            // One query per head. The workers split the query heads evenly; each streams the cached
            // rows of a KV head once for all of its heads that share it.
            let pStride = chunk * capacity
            SpinPool.shared.chunks(H) { heads in
                var h0 = heads.lowerBound
                while h0 < heads.upperBound {
                    let g = h0 / rep, h1 = min(heads.upperBound, (g + 1) * rep), count = h1 - h0
                    let s = scores.pointer + h0 * pStride
                    smol_f16_scores(q.pointer + rowOffset * H * D + h0 * D, Int32(count), Int32(D), keys16[l] + g * D, KV * D,
                                    Int32(total), scale, s, pStride)
                    for r in 0..<count {
                        let row = s + r * pStride
                        let m = FastExp.max(row, total)
                        let inv = 1 / FastExp.expShiftSum(row, row, total, shift: m)
                        for j in 0..<total { row[j] *= inv }
                    }
                    smol_f16_weighted_sum(s, pStride, Int32(count), values16[l] + g * D, KV * D, Int32(total), Int32(D),
                                          attn.pointer + rowOffset * H * D + h0 * D)
                    h0 = h1
                }
            }
            return
        }
        let (kc, vc) = floatCache(layer: l, total: total)
        if n == 1 && !rowInvariant {
            // One query: dot products and a weighted sum of rows, no GEMM call overhead.
            SpinPool.shared.chunks(H) { heads in
                for head in heads {
                    let g = head / rep, s = scores.pointer + head * chunk * capacity, qh = q.pointer + rowOffset * H * D + head * D
                    if D == 64 {   // the common head size, unrolled with the query held in registers
                        let q0 = VectorMath.load(qh), q1 = VectorMath.load(qh + 8), q2 = VectorMath.load(qh + 16), q3 = VectorMath.load(qh + 24)
                        let q4 = VectorMath.load(qh + 32), q5 = VectorMath.load(qh + 40), q6 = VectorMath.load(qh + 48), q7 = VectorMath.load(qh + 56)
                        for j in 0..<total {
                            let kj = kc + j * KV * D + g * D
                            var a = q0 * VectorMath.load(kj), b = q1 * VectorMath.load(kj + 8)
                            a.addProduct(q2, VectorMath.load(kj + 16)); b.addProduct(q3, VectorMath.load(kj + 24))
                            a.addProduct(q4, VectorMath.load(kj + 32)); b.addProduct(q5, VectorMath.load(kj + 40))
                            a.addProduct(q6, VectorMath.load(kj + 48)); b.addProduct(q7, VectorMath.load(kj + 56))
                            s[j] = (a + b).sum() * scale
                        }
                    } else {
                        for j in 0..<total { s[j] = VectorMath.dot(qh, kc + j * KV * D + g * D, D) * scale }
                    }
                    let m = FastExp.max(s, total)
                    let inv = 1 / FastExp.expShiftSum(s, s, total, shift: m)
                    let o = attn.pointer + rowOffset * H * D + head * D
                    o.update(repeating: 0, count: D)
                    for j in 0..<total { VectorMath.axpy(s[j] * inv, vc + j * KV * D + g * D, o, D) }
                }
            }
            return
        }
        BLAS.singleThreaded {
            Parallel.tasks(H) { head in
                let g = head / rep
                let s = scores.pointer + head * chunk * capacity
                BLAS.sgemm(transB: true, m: n, n: total, k: D, alpha: scale, a: q.pointer + rowOffset * H * D + head * D, lda: H * D,
                           b: kc + g * D, ldb: KV * D, c: s, ldc: total)
                for i in 0..<n {
                    let row = s + i * total, visible = past + i + 1
                    let m = FastExp.max(row, visible)
                    let sum = FastExp.expShiftSum(row, row, visible, shift: m)
                    let inv = 1 / sum
                    for j in 0..<visible { row[j] *= inv }
                    if visible < total { (row + visible).update(repeating: 0, count: total - visible) }
                }
                BLAS.sgemm(m: n, n: D, k: total, a: s, lda: total, b: vc + g * D, ldb: KV * D, c: attn.pointer + rowOffset * H * D + head * D, ldc: H * D)
            }
        }
    }
}

/// Single-token decoding through the GGUF's quantised blocks where the model has them (q/k/v and
/// gate/up each one parallel step); everything else through the float32 weights.
struct DecodeProjections: BlockProjections {
    let model: LlamaModel
    let decode: DecodeWeights?
    /// The float32 weights' GEMM input format.
    let precision: MatmulPrecision

    func project(_ name: String, layer: Int, y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, n: Int,
                 inDim: Int, outDim: Int, accumulate: Bool) {
        if n == 1, let m = decode?.layers[layer][name] {
            m.multiply(x, into: y, accumulate: accumulate)
            return
        }
        FloatProjections(model: model, precision: precision).project(name, layer: layer, y: y, x: x, n: n, inDim: inDim, outDim: outDim,
                                                                     accumulate: accumulate)
    }

    func projectShared(_ outputs: [(name: String, y: UnsafeMutablePointer<Float>, outDim: Int)], layer: Int,
                       x: UnsafePointer<Float>, n: Int, inDim: Int) {
        if n == 1, let layerWeights = decode?.layers[layer] {
            let matrices = outputs.compactMap { o in layerWeights[o.name].map { ($0, o.y) } }
            if matrices.count == outputs.count { BlockMatrix.multiply(matrices, x: x); return }
        }
        for o in outputs { project(o.name, layer: layer, y: o.y, x: x, n: n, inDim: inDim, outDim: o.outDim, accumulate: false) }
    }
}
