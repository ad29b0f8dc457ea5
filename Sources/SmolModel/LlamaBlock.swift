import SmolTensor

/// How a block's matrices multiply their inputs. Training and prefill use the float32 weights
/// through BLAS (`FloatProjections`); single-token decoding may use the GGUF's quantised blocks.
protocol BlockProjections {
    /// y [n, out] (+)= x [n, in] · Wᵀ with W the layer's matrix `name` ("self_attn.q_proj.weight", ...).
    func project(_ name: String, layer: Int, y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, n: Int,
                 inDim: Int, outDim: Int, accumulate: Bool)
    /// Several matrices of one input (q/k/v, gate/up): one call, so a decode kernel can run them as one parallel step.
    func projectShared(_ outputs: [(name: String, y: UnsafeMutablePointer<Float>, outDim: Int)], layer: Int,
                       x: UnsafePointer<Float>, n: Int, inDim: Int)
}

extension BlockProjections {
    func projectShared(_ outputs: [(name: String, y: UnsafeMutablePointer<Float>, outDim: Int)], layer: Int,
                       x: UnsafePointer<Float>, n: Int, inDim: Int) {
        for o in outputs { project(o.name, layer: layer, y: o.y, x: x, n: n, inDim: inDim, outDim: o.outDim, accumulate: false) }
    }
}

/// The float32 weights of the model's parameter store, through BLAS (or the bf16 GEMM).
struct FloatProjections: BlockProjections {
    let model: LlamaModel
    /// The GEMMs' input format: the model's `matmulPrecision` unless a caller (inference) says.
    let precision: MatmulPrecision

    init(model: LlamaModel, precision: MatmulPrecision? = nil) {
        self.model = model
        self.precision = precision ?? model.matmulPrecision
    }

    func project(_ name: String, layer: Int, y: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, n: Int,
                 inDim: Int, outDim: Int, accumulate: Bool) {
        Profiler.time("matmul") {
            Linear.forward(y: y, x: x, w: model.weight("model.layers.\(layer)." + name), n: n, inDim: inDim, outDim: outDim,
                           accumulate: accumulate, precision: precision)
        }
    }
}

/// Where one block's forward writes. Training keeps one set per layer for the backward pass;
/// inference reuses one set for every layer, with `mid` and `out` the residual stream itself
/// and `swiglu` written over `gate`.
struct BlockBuffers {
    var norm1: UnsafeMutablePointer<Float>, rstd1: UnsafeMutablePointer<Float>          // [n, C], [n]
    var q: UnsafeMutablePointer<Float>, k: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>   // [n, H·D], [n, KV·D] ×2
    /// QK-norm: the projections before the per-head norm (nil: normalised in place) and its rstd [n·H], [n·KV].
    var qRaw: UnsafeMutablePointer<Float>?, kRaw: UnsafeMutablePointer<Float>?
    var qRstd: UnsafeMutablePointer<Float>?, kRstd: UnsafeMutablePointer<Float>?
    var attnOut: UnsafeMutablePointer<Float>                                            // [n, H·D]
    var mid: UnsafeMutablePointer<Float>                                                // [n, C]
    var norm2: UnsafeMutablePointer<Float>, rstd2: UnsafeMutablePointer<Float>          // [n, C], [n]
    var gate: UnsafeMutablePointer<Float>, up: UnsafeMutablePointer<Float>, swiglu: UnsafeMutablePointer<Float>   // [n, F]
}

extension LlamaModel {
    /// One decoder block, the only place its math is written (training, prefill, decode, scoring):
    ///   h = RMSNorm(x);  q, k, v = h·Wqᵀ (+bq), h·Wkᵀ (+bk), h·Wvᵀ (+bv)
    ///   q, k = RMSNorm per head (QK-norm);  q, k = RoPE(q, k) unless a NoPE layer
    ///   mid = x + attend(q, k, v)·Woᵀ
    ///   out = mid + (silu(h₂·Wgᵀ) ⊙ h₂·Wuᵀ)·Wdᵀ,  h₂ = RMSNorm(mid)
    /// `attend` fills `b.attnOut` from `b.q`, `b.k`, `b.v` (the caller's attention: over the batch in
    /// training, against the KV cache in inference). `x` and `out` may be the same buffer, as may `x` and `b.mid`.
    func blockForward(layer l: Int, n: Int, x: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>, buffers b: BlockBuffers,
                      positions: UnsafePointer<Int32>, projections: BlockProjections, attend: () -> Void) {
        let c = config.hiddenSize, f = config.intermediateSize, H = config.numAttentionHeads, KV = config.numKeyValueHeads
        let D = config.headDim, eps = Float(config.rmsNormEps)
        let pre = "model.layers.\(l)."
        Profiler.time("norm") {
            RMSNorm.forward(y: b.norm1, rstd: b.rstd1, x: x, w: weight(pre + "input_layernorm.weight"), n: n, c: c, eps: eps)
        }
        let qOut = b.qRaw ?? b.q, kOut = b.kRaw ?? b.k
        projections.projectShared([("self_attn.q_proj.weight", qOut, config.qDim), ("self_attn.k_proj.weight", kOut, config.kvDim),
                                   ("self_attn.v_proj.weight", b.v, config.kvDim)], layer: l, x: b.norm1, n: n, inDim: c)
        if config.qkvBias {
            Bias.forward(y: qOut, b: weight(pre + "self_attn.q_proj.bias"), n: n, outDim: config.qDim)
            Bias.forward(y: kOut, b: weight(pre + "self_attn.k_proj.bias"), n: n, outDim: config.kvDim)
            Bias.forward(y: b.v, b: weight(pre + "self_attn.v_proj.bias"), n: n, outDim: config.kvDim)
        }
        if config.qkNorm, let qr = b.qRstd, let kr = b.kRstd {
            Profiler.time("norm") {
                RMSNorm.forward(y: b.q, rstd: qr, x: qOut, w: weight(pre + "self_attn.q_norm.weight"), n: n * H, c: D, eps: eps)
                RMSNorm.forward(y: b.k, rstd: kr, x: kOut, w: weight(pre + "self_attn.k_norm.weight"), n: n * KV, c: D, eps: eps)
            }
        }
        if config.usesRope(layer: l) {
            Profiler.time("rope") {
                rope.apply(b.q, positions: positions, n: n, heads: H, inverse: false)
                rope.apply(b.k, positions: positions, n: n, heads: KV, inverse: false)
            }
        }
        Profiler.time("attention", attend)
        // Tensor parallel: o_proj and down_proj are row-parallel, each rank's product a partial sum.
        // Rank 0 adds it to the residual, the others to zero, and the sum over ranks is the block's.
        let partial = tensorParallel.map { $0.plan.size > 1 } ?? false
        precondition(!partial || (b.mid != x && out != b.mid), "tensor parallel needs the residual in separate buffers")
        if partial && tensorParallel!.plan.rank != 0 { b.mid.update(repeating: 0, count: n * c) }
        else if b.mid != x { b.mid.update(from: x, count: n * c) }
        projections.project("self_attn.o_proj.weight", layer: l, y: b.mid, x: b.attnOut, n: n, inDim: config.qDim, outDim: c, accumulate: true)
        if partial { sumOverTensorParallelRanks(b.mid, count: n * c) }
        Profiler.time("norm") {
            RMSNorm.forward(y: b.norm2, rstd: b.rstd2, x: b.mid, w: weight(pre + "post_attention_layernorm.weight"), n: n, c: c, eps: eps)
        }
        projections.projectShared([("mlp.gate_proj.weight", b.gate, f), ("mlp.up_proj.weight", b.up, f)], layer: l, x: b.norm2, n: n, inDim: c)
        Profiler.time("swiglu") { SwiGLU.forward(h: b.swiglu, gate: b.gate, up: b.up, count: n * f) }
        if partial && tensorParallel!.plan.rank != 0 { out.update(repeating: 0, count: n * c) }
        else if out != b.mid { out.update(from: b.mid, count: n * c) }
        projections.project("mlp.down_proj.weight", layer: l, y: out, x: b.swiglu, n: n, inDim: f, outDim: c, accumulate: true)
        if partial { sumOverTensorParallelRanks(out, count: n * c) }
    }
}
