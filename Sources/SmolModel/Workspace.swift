import SmolTensor

/// Everything one training step writes, allocated once for a (batch, sequence) shape.
/// Saved per layer for the backward pass: the residual stream before and after attention, both
/// norm outputs and their rstd, post-RoPE q/k, v, the attention output and its log-sum-exp, and
/// the MLP gate and up projections and their SwiGLU product.
final class Workspace {
    let batch: Int, seqLen: Int
    let training: Bool
    var tokens: Int { batch * seqLen }

    let residual: [FloatBuffer]     // L+1 × [N, C]; residual[l] is layer l's input
    let residualMid: [FloatBuffer]  // L × [N, C]; after attention
    let norm1: [FloatBuffer], norm2: [FloatBuffer]   // L × [N, C]
    let rstd1: [FloatBuffer], rstd2: [FloatBuffer]   // L × [N]
    let q: [FloatBuffer], k: [FloatBuffer], v: [FloatBuffer]
    let attnOut: [FloatBuffer], lse: [FloatBuffer]
    /// QK-norm (Qwen3): q and k before the per-head norm, and its rstd (nil without QK-norm).
    let qRaw: [FloatBuffer?], kRaw: [FloatBuffer?], qRstd: [FloatBuffer?], kRstd: [FloatBuffer?]
    let gate: [FloatBuffer], up: [FloatBuffer], swiglu: [FloatBuffer]
    let finalNorm: FloatBuffer, finalRstd: FloatBuffer

    // Scratch shared by all layers.
    let dResidual: FloatBuffer, dNorm: FloatBuffer   // [N, C]
    let dq: FloatBuffer, dk: FloatBuffer, dv: FloatBuffer, dAttn: FloatBuffer
    let dGate: FloatBuffer, dUp: FloatBuffer, dSwiglu: FloatBuffer
    let dqRaw: FloatBuffer?, dkRaw: FloatBuffer?
    let normPartials: FloatBuffer           // threads × C

    let tokenIds: UnsafeMutablePointer<Int32>, targets: UnsafeMutablePointer<Int32>
    let lossWeights: UnsafeMutablePointer<Float>
    let positions: UnsafeMutablePointer<Int32>, keyStart: UnsafeMutablePointer<Int32>

    let attention: Attention
    let head: CrossEntropyHead

    init(config: LlamaConfig, batch: Int, seqLen: Int, training: Bool) {
        self.batch = batch; self.seqLen = seqLen; self.training = training
        let n = batch * seqLen, c = config.hiddenSize, f = config.intermediateSize, L = config.numHiddenLayers
        func bufs(_ count: Int, _ size: Int) -> [FloatBuffer] { (0..<count).map { _ in FloatBuffer(count: size) } }
        // Without training only one layer's activations are live at a time, so layers share them.
        let kept = training ? L : 1
        residual = bufs(training ? L + 1 : 2, n * c); residualMid = bufs(kept, n * c)
        norm1 = bufs(kept, n * c); norm2 = bufs(kept, n * c)
        rstd1 = bufs(kept, n); rstd2 = bufs(kept, n)
        q = bufs(kept, n * config.qDim); k = bufs(kept, n * config.kvDim); v = bufs(kept, n * config.kvDim)
        attnOut = bufs(kept, n * config.qDim); lse = bufs(kept, batch * config.numAttentionHeads * seqLen)
        gate = bufs(kept, n * f); up = bufs(kept, n * f); swiglu = bufs(kept, n * f)
        func optional(_ size: Int) -> [FloatBuffer?] { (0..<kept).map { _ in config.qkNorm ? FloatBuffer(count: size) : nil } }
        qRaw = optional(n * config.qDim); kRaw = optional(n * config.kvDim)
        qRstd = optional(n * config.numAttentionHeads); kRstd = optional(n * config.numKeyValueHeads)
        finalNorm = FloatBuffer(count: n * c); finalRstd = FloatBuffer(count: n)
        let g = training ? n : 0
        dResidual = FloatBuffer(count: g * c); dNorm = FloatBuffer(count: g * c)
        dq = FloatBuffer(count: g * config.qDim); dk = FloatBuffer(count: g * config.kvDim)
        dv = FloatBuffer(count: g * config.kvDim); dAttn = FloatBuffer(count: g * config.qDim)
        dGate = FloatBuffer(count: g * f); dUp = FloatBuffer(count: g * f); dSwiglu = FloatBuffer(count: g * f)
        dqRaw = config.qkNorm && training ? FloatBuffer(count: n * config.qDim) : nil
        dkRaw = config.qkNorm && training ? FloatBuffer(count: n * config.kvDim) : nil
        normPartials = FloatBuffer(count: Parallel.threads * c)
        tokenIds = .allocate(capacity: n); targets = .allocate(capacity: n); lossWeights = .allocate(capacity: n)
        positions = .allocate(capacity: n); keyStart = .allocate(capacity: n)
        attention = Attention(batch: batch, seqLen: seqLen, heads: config.numAttentionHeads,
                              kvHeads: config.numKeyValueHeads, headDim: config.headDim)
        head = CrossEntropyHead(vocab: config.vocabSize, hidden: c, maxRows: n)
    }

    deinit {
        tokenIds.deallocate(); targets.deallocate(); lossWeights.deallocate(); positions.deallocate(); keyStart.deallocate()
    }
}
