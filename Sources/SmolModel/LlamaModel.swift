import Foundation
import SmolTensor

/// One (batch, sequence) of token ids with next-token targets. `documentStart[i]` is the index,
/// within i's sequence, where i's document begins (used only with intra-document masking).
/// `lossWeights[i]` weighs target i's loss (nil: 1 each; SFT's per-sequence normalisation gives each
/// conversation's targets 1 / their count, so every conversation weighs the same).
public struct TokenBatch {
    public var batch: Int, seqLen: Int
    public var tokens: [Int32], targets: [Int32]
    public var documentStart: [Int32]?
    public var lossWeights: [Float]?
    /// Preference pairs (one per row, chosen then rejected): the reference model's summed
    /// completion log-probabilities, chosen and rejected for each row (2 × batch), nil otherwise.
    public var referenceLogProbs: [Double]?

    /// Σ of the weights of the targets that carry loss (their count without weights).
    public var lossWeight: Double {
        guard let w = lossWeights else { return Double(targets.reduce(0) { $0 + ($1 >= 0 ? 1 : 0) }) }
        var s = 0.0
        for (t, x) in zip(targets, w) where t >= 0 { s += Double(x) }
        return s
    }

    public init(batch: Int, seqLen: Int, tokens: [Int32], targets: [Int32], documentStart: [Int32]? = nil, lossWeights: [Float]? = nil) {
        precondition(tokens.count == batch * seqLen && targets.count == batch * seqLen)
        precondition(lossWeights.map { $0.count == batch * seqLen } ?? true)
        self.batch = batch; self.seqLen = seqLen; self.tokens = tokens; self.targets = targets
        self.documentStart = documentStart; self.lossWeights = lossWeights
    }
}

public enum ModelError: Error, CustomStringConvertible {
    case tokenOutOfRange(id: Int32, vocab: Int)
    case sequenceTooLong(length: Int, max: Int)
    case doesNotFit(what: String, needed: Double, available: Double)
    public var description: String {
        switch self {
        case let .doesNotFit(what, needed, available):
            return "\(what) needs about \(SystemMemory.format(needed)) and this machine has \(SystemMemory.format(available)) available"
        case let .tokenOutOfRange(id, vocab): return "token id \(id) is outside the vocabulary (size \(vocab))"
        case let .sequenceTooLong(length, max): return "sequence length \(length) exceeds max_position_embeddings \(max)"
        }
    }
}

/// Llama-family decoder: embedding → L × [RMSNorm → GQA attention (RoPE or NoPE) → residual →
/// RMSNorm → SwiGLU MLP → residual] → RMSNorm → tied or separate output head.
/// The forward and backward passes are written out op by op below.
public final class LlamaModel {
    /// The architecture; only `setRopeTheta` changes it (a long-context stage).
    public private(set) var config: LlamaConfig
    public let parameters: ParameterStore
    public let gradients: FloatBuffer
    private(set) var rope: RoPETable
    /// Quantised copies of the matrices for single-token decoding (set by the GGUF loader).
    public var decodeWeights: DecodeWeights?
    /// This model is one rank's shard of a tensor-parallel model (`config` is then the shard's:
    /// see TensorParallelPlan.localConfig); nil for a whole model.
    public var tensorParallel: TensorParallel?
    /// The input format of the training and prefill GEMMs (projections and head): fp32, or bf16
    /// with float32 sums (`training.precision`). Weights, gradients and activations stay float32.
    /// Set it through `MatmulPrecision.resolve` on CPUs that may lack AVX512-BF16.
    public var matmulPrecision: MatmulPrecision = .fp32
    /// Seconds in tensor-parallel collectives since the last `resetTensorParallelTimer()`.
    public private(set) var tensorParallelSeconds = 0.0
    /// The first error of a tensor-parallel collective inside a pass, thrown when the pass ends.
    private var tensorParallelError: Error?
    private var workspace: Workspace?

    public init(config: LlamaConfig) throws {
        try config.validate()
        // Weights and their gradients (float32 each) and the RoPE table, before allocating them.
        let needed = Double(config.parameterCount) * 8 + Double(config.maxPositionEmbeddings) * Double(config.headDim) * 4
        if let available = SystemMemory.availableBytes(), needed > Double(available) {
            throw ModelError.doesNotFit(what: "a model of \(config.parameterCount) parameters (weights and gradients)", needed: needed, available: Double(available))
        }
        BLAS.yieldIdleThreads
        self.config = config
        parameters = ParameterStore(config: config)
        gradients = FloatBuffer(count: parameters.count)
        rope = RoPETable(headDim: config.headDim, maxPositions: config.maxPositionEmbeddings, theta: config.ropeTheta, scaling: config.ropeScaling)
    }

    /// A new RoPE base (a long-context stage raises it): the table is rebuilt and the config says so,
    /// so checkpoints and exports carry the θ the weights are trained for.
    public func setRopeTheta(_ theta: Double) {
        guard theta != config.ropeTheta else { return }
        config.ropeTheta = theta
        rope = RoPETable(headDim: config.headDim, maxPositions: config.maxPositionEmbeddings, theta: theta, scaling: config.ropeScaling)
    }

    /// Refuses a training shape whose activations (about 4 bytes × tokens × layers × (4·hidden +
    /// 2·q + 2·kv + 3·intermediate), what the backward keeps) cannot fit in the memory available,
    /// before anything is allocated.
    public func checkTrainingMemory(batch: Int, seqLen: Int) throws {
        let c = config, tokens = Double(batch) * Double(seqLen)
        let perToken = Double(c.numHiddenLayers) * Double(4 * c.hiddenSize + 2 * c.qDim + 2 * c.kvDim + 3 * c.intermediateSize) * 4
        let needed = tokens * perToken
        if let available = SystemMemory.availableBytes(), needed > Double(available) {
            throw ModelError.doesNotFit(what: "training activations for micro_batch \(batch) × seq_len \(seqLen)", needed: needed, available: Double(available))
        }
    }

    /// Allocates activations for this shape (once; a new shape replaces them).
    public func prepare(batch: Int, seqLen: Int, training: Bool) {
        // A training workspace also serves evaluation at the same shape.
        if let w = workspace, w.batch == batch, w.seqLen == seqLen, w.training || !training { return }
        workspace = nil
        workspace = Workspace(config: config, batch: batch, seqLen: seqLen, training: training)
    }

    /// Σ over the tensor-parallel ranks of a partial result, in place (a row-parallel output in the
    /// forward, a column-parallel input's gradient in the backward); nothing without tensor parallelism.
    func sumOverTensorParallelRanks(_ p: UnsafeMutablePointer<Float>, count: Int) {
        tensorParallelCall { try $0.allReduceSum(p, count: count) }
    }

    /// A collective of the tensor-parallel group, timed; its error is kept for the end of the pass.
    private func tensorParallelCall(_ body: (Collectives) throws -> Void) {
        guard let tp = tensorParallel, tp.plan.size > 1 else { return }
        let t0 = DispatchTime.now().uptimeNanoseconds
        Profiler.time("tp.collectives") {
            do { try body(tp.group) } catch { tensorParallelError = tensorParallelError ?? error }
        }
        tensorParallelSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
    }

    /// The token rows this rank's embedding and head hold when they are vocabulary-parallel.
    private var vocabRows: Range<Int>? {
        guard let plan = tensorParallel?.plan, plan.vocabParallel else { return nil }
        return plan.vocabRange
    }

    /// The head's place in a vocabulary-parallel group (nil when the head is whole).
    private func vocabShard() -> CrossEntropyHead.VocabShard? {
        guard let plan = tensorParallel?.plan, let rows = vocabRows else { return nil }
        return CrossEntropyHead.VocabShard(offset: rows.lowerBound, ranks: plan.size, rank: plan.rank,
                                           allGather: { [unowned self] b, blocks in tensorParallelCall { try $0.allGather(b, shards: blocks) } },
                                           sum: { [unowned self] b, n in sumOverTensorParallelRanks(b, count: n) })
    }

    public func resetTensorParallelTimer() { tensorParallelSeconds = 0 }

    private func throwTensorParallelError() throws {
        if let e = tensorParallelError { tensorParallelError = nil; throw e }
    }

    func weight(_ name: String) -> UnsafeMutablePointer<Float> { parameters.pointer(name, in: parameters.values) }
    private func g(_ name: String) -> UnsafeMutablePointer<Float> { parameters.pointer(name, in: gradients) }
    private var headName: String { config.tieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight" }

    private func load(_ b: TokenBatch, into ws: Workspace) throws {
        let n = b.batch * b.seqLen
        let vocabSize = tensorParallel?.plan.vocabSize ?? config.vocabSize   // a vocabulary-parallel shard's config holds its part
        if b.seqLen > config.maxPositionEmbeddings { throw ModelError.sequenceTooLong(length: b.seqLen, max: config.maxPositionEmbeddings) }
        for i in 0..<n {
            let t = b.tokens[i]
            if t < 0 || Int(t) >= vocabSize { throw ModelError.tokenOutOfRange(id: t, vocab: vocabSize) }
            let target = b.targets[i]
            if target >= Int32(vocabSize) { throw ModelError.tokenOutOfRange(id: target, vocab: vocabSize) }
            ws.tokenIds[i] = t; ws.targets[i] = target
            ws.lossWeights[i] = b.lossWeights?[i] ?? 1
            let pos = i % b.seqLen
            let start = config.intraDocumentMasking ? Int(b.documentStart?[i] ?? 0) : 0
            ws.keyStart[i] = Int32(min(max(start, 0), pos))
            ws.positions[i] = Int32(pos) - ws.keyStart[i]
        }
    }

    /// Runs the model on `batch`. Returns the summed loss (each target's weighted by its loss
    /// weight) and the number of counted targets.
    /// With `computeGradients`, the backward pass runs too and ADDS into `gradients`
    /// (d(lossScale · Σ loss)/dθ), so micro-batches accumulate.
    ///
    /// `reweight` serves objectives over whole sequences (DPO, APO), whose per-token weights depend
    /// on the sequences' own log-probabilities: the head first scores every target unweighted, then
    /// `reweight(tokenLosses, weights)` sets the loss weights from those per-token losses
    /// (−log p of each target, 0 where none), and the head's gradient and the backward use them.
    /// The loss returned is then the unweighted one. It costs one extra pass of the head, not a forward.
    ///
    /// `distill`: the row loss mixes cross-entropy with a teacher's KL (DistillationTarget).
    @discardableResult
    public func forward(_ batch: TokenBatch, lossScale: Float = 1, computeGradients: Bool,
                        reweight: ((_ tokenLosses: UnsafeBufferPointer<Float>, _ weights: UnsafeMutableBufferPointer<Float>) -> Void)? = nil,
                        distill: DistillationTarget? = nil) throws -> (loss: Double, count: Int) {
        let ws = try trunk(batch, training: computeGradients)
        let n = ws.tokens
        let eps = Float(config.rmsNormEps)
        let wantGrad = computeGradients && ws.training
        if let reweight, wantGrad {
            let unweighted = Profiler.time("head+loss") {
                ws.head.forward(x: ws.finalNorm.pointer, w: weight(headName), targets: ws.targets, weights: nil, n: n, scale: 1, dx: nil, dw: nil)
            }
            reweight(UnsafeBufferPointer(start: ws.head.tokenLosses, count: n), UnsafeMutableBufferPointer(start: ws.lossWeights, count: n))
            _ = Profiler.time("head+loss") {
                ws.head.forward(x: ws.finalNorm.pointer, w: weight(headName), targets: ws.targets, weights: ws.lossWeights, n: n, scale: lossScale,
                                dx: ws.dNorm.pointer, dw: g(headName))
            }
            backward(ws: ws, eps: eps)
            try throwTensorParallelError()
            return unweighted
        }
        let result = Profiler.time("head+loss") { ws.head.forward(x: ws.finalNorm.pointer, w: weight(headName), targets: ws.targets, weights: ws.lossWeights, n: n, scale: lossScale,
                                     dx: wantGrad ? ws.dNorm.pointer : nil, dw: wantGrad ? g(headName) : nil, distill: distill) }
        if wantGrad { backward(ws: ws, eps: eps) }
        try throwTensorParallelError()
        return result
    }

    /// Embedding → blocks → final norm: ws.finalNorm [N, C] holds the head's input.
    private func trunk(_ batch: TokenBatch, training wantTraining: Bool) throws -> Workspace {
        prepare(batch: batch.batch, seqLen: batch.seqLen, training: wantTraining)
        let ws = workspace!
        try load(batch, into: ws)
        let n = ws.tokens, c = config.hiddenSize, L = config.numHiddenLayers
        let training = ws.training
        let eps = Float(config.rmsNormEps)

        // Embedding: x0 [N, C]
        Profiler.time("embedding") {
            Embedding.forward(out: ws.residual[0].pointer, tokens: ws.tokenIds, table: weight("model.embed_tokens.weight"), n: n, c: c, rows: vocabRows)
        }
        if vocabRows != nil { sumOverTensorParallelRanks(ws.residual[0].pointer, count: n * c) }
        ws.head.shard = vocabShard()
        ws.head.precision = matmulPrecision
        ws.attention.precision = matmulPrecision
        for l in 0..<L {
            let s = training ? l : 0
            let x = ws.residual[training ? l : l % 2], xNext = ws.residual[training ? l + 1 : (l + 1) % 2]
            let b = buffers(ws, slot: s)
            blockForward(layer: l, n: n, x: x.pointer, out: xNext.pointer, buffers: b, positions: ws.positions,
                         projections: FloatProjections(model: self)) {
                ws.attention.forward(out: b.attnOut, lse: ws.lse[s].pointer, q: b.q, k: b.k, v: b.v, keyStart: ws.keyStart)
            }
        }
        let last = ws.residual[training ? L : L % 2]
        Profiler.time("norm") {
            RMSNorm.forward(y: ws.finalNorm.pointer, rstd: ws.finalRstd.pointer, x: last.pointer, w: weight("model.norm.weight"), n: n, c: c, eps: eps)
        }
        return ws
    }

    /// A teacher's forward (no gradients, no loss): the final hidden states of `batch`, kept until
    /// the next pass; `headLogits` then produces its logits a block of rows at a time.
    public func hiddenStates(_ batch: TokenBatch) throws {
        _ = try trunk(batch, training: false)
        try throwTensorParallelError()
    }

    /// Logits [rows, V] of the last `hiddenStates` (or forward) for token rows `rows`.
    public func headLogits(rows: Range<Int>, into z: UnsafeMutablePointer<Float>) {
        let ws = workspace!
        precondition(rows.upperBound <= ws.tokens && tensorParallel == nil)
        ws.head.logits(x: ws.finalNorm.pointer, w: weight(headName), rows: rows, into: z)
    }

    /// The last forward's distillation sums over counted targets: Σ weight · CE and Σ weight · KL.
    public var distillationSums: (ce: Double, kl: Double) { workspace?.head.distillSums ?? (0, 0) }

    /// Layer l's saved activations (training), or the one shared set (evaluation).
    private func buffers(_ ws: Workspace, slot s: Int) -> BlockBuffers {
        BlockBuffers(norm1: ws.norm1[s].pointer, rstd1: ws.rstd1[s].pointer, q: ws.q[s].pointer, k: ws.k[s].pointer, v: ws.v[s].pointer,
                     qRaw: ws.qRaw[s]?.pointer, kRaw: ws.kRaw[s]?.pointer, qRstd: ws.qRstd[s]?.pointer, kRstd: ws.kRstd[s]?.pointer,
                     attnOut: ws.attnOut[s].pointer, mid: ws.residualMid[s].pointer, norm2: ws.norm2[s].pointer,
                     rstd2: ws.rstd2[s].pointer, gate: ws.gate[s].pointer, up: ws.up[s].pointer, swiglu: ws.swiglu[s].pointer)
    }

    /// Backward from dNorm = dL/d(final norm output), which the head wrote.
    private func backward(ws: Workspace, eps: Float) {
        let n = ws.tokens, c = config.hiddenSize, f = config.intermediateSize, L = config.numHiddenLayers
        let dRes = ws.dResidual.pointer
        dRes.update(repeating: 0, count: n * c)
        Profiler.time("norm.bwd") {
            RMSNorm.backward(dx: dRes, dw: g("model.norm.weight"), dy: ws.dNorm.pointer, x: ws.residual[L].pointer,
                             w: weight("model.norm.weight"), rstd: ws.finalRstd.pointer, n: n, c: c, partials: ws.normPartials.pointer)
        }
        for l in stride(from: L - 1, through: 0, by: -1) {
            let pre = "model.layers.\(l)."
            // MLP: dRes holds dL/d(out); out = mid + down(swiglu)
            Profiler.time("matmul.bwd") {
                Linear.backward(dx: ws.dSwiglu.pointer, dw: g(pre + "mlp.down_proj.weight"), dy: dRes, x: ws.swiglu[l].pointer,
                                w: weight(pre + "mlp.down_proj.weight"), n: n, inDim: f, outDim: c, precision: matmulPrecision)
            }
            Profiler.time("swiglu.bwd") {
                SwiGLU.backward(dGate: ws.dGate.pointer, dUp: ws.dUp.pointer, dh: ws.dSwiglu.pointer,
                                gate: ws.gate[l].pointer, up: ws.up[l].pointer, count: n * f)
            }
            Profiler.time("matmul.bwd") {
                Linear.backward(dx: ws.dNorm.pointer, dw: g(pre + "mlp.gate_proj.weight"), dy: ws.dGate.pointer, x: ws.norm2[l].pointer,
                                w: weight(pre + "mlp.gate_proj.weight"), n: n, inDim: c, outDim: f, precision: matmulPrecision)
            }
            Profiler.time("matmul.bwd") {
                Linear.backward(dx: ws.dNorm.pointer, dw: g(pre + "mlp.up_proj.weight"), dy: ws.dUp.pointer, x: ws.norm2[l].pointer,
                                w: weight(pre + "mlp.up_proj.weight"), n: n, inDim: c, outDim: f, accumulateDx: true, precision: matmulPrecision)
            }
            sumOverTensorParallelRanks(ws.dNorm.pointer, count: n * c)   // gate/up are column-parallel
            Profiler.time("norm.bwd") {
                RMSNorm.backward(dx: dRes, dw: g(pre + "post_attention_layernorm.weight"), dy: ws.dNorm.pointer, x: ws.residualMid[l].pointer,
                                 w: weight(pre + "post_attention_layernorm.weight"), rstd: ws.rstd2[l].pointer, n: n, c: c,
                                 partials: ws.normPartials.pointer)
            }
            // Attention: dRes now holds dL/d(mid); mid = x + o_proj(attn)
            Profiler.time("matmul.bwd") {
                Linear.backward(dx: ws.dAttn.pointer, dw: g(pre + "self_attn.o_proj.weight"), dy: dRes, x: ws.attnOut[l].pointer,
                                w: weight(pre + "self_attn.o_proj.weight"), n: n, inDim: config.qDim, outDim: c, precision: matmulPrecision)
            }
            Profiler.time("attention.bwd") {
                ws.attention.backward(dq: ws.dq.pointer, dk: ws.dk.pointer, dv: ws.dv.pointer, dOut: ws.dAttn.pointer,
                                      out: ws.attnOut[l].pointer, lse: ws.lse[l].pointer, q: ws.q[l].pointer, k: ws.k[l].pointer,
                                      v: ws.v[l].pointer, keyStart: ws.keyStart)
            }
            if config.usesRope(layer: l) {
                Profiler.time("rope") {
                    rope.apply(ws.dq.pointer, positions: ws.positions, n: n, heads: config.numAttentionHeads, inverse: true)
                }
                Profiler.time("rope") {
                    rope.apply(ws.dk.pointer, positions: ws.positions, n: n, heads: config.numKeyValueHeads, inverse: true)
                }
            }
            // QK-norm: back through the per-head RMSNorm to the projections' outputs.
            var dqLin = ws.dq.pointer, dkLin = ws.dk.pointer
            if config.qkNorm, let dqRaw = ws.dqRaw?.pointer, let dkRaw = ws.dkRaw?.pointer {
                let D = config.headDim
                Profiler.time("norm.bwd") {
                    dqRaw.update(repeating: 0, count: n * config.qDim)
                    RMSNorm.backward(dx: dqRaw, dw: g(pre + "self_attn.q_norm.weight"), dy: ws.dq.pointer, x: ws.qRaw[l]!.pointer,
                                     w: weight(pre + "self_attn.q_norm.weight"), rstd: ws.qRstd[l]!.pointer, n: n * config.numAttentionHeads,
                                     c: D, partials: ws.normPartials.pointer)
                    dkRaw.update(repeating: 0, count: n * config.kvDim)
                    RMSNorm.backward(dx: dkRaw, dw: g(pre + "self_attn.k_norm.weight"), dy: ws.dk.pointer, x: ws.kRaw[l]!.pointer,
                                     w: weight(pre + "self_attn.k_norm.weight"), rstd: ws.kRstd[l]!.pointer, n: n * config.numKeyValueHeads,
                                     c: D, partials: ws.normPartials.pointer)
                }
                dqLin = dqRaw; dkLin = dkRaw
            }
            if config.qkvBias {
                Bias.backward(db: g(pre + "self_attn.q_proj.bias"), dy: dqLin, n: n, outDim: config.qDim)
                Bias.backward(db: g(pre + "self_attn.k_proj.bias"), dy: dkLin, n: n, outDim: config.kvDim)
                Bias.backward(db: g(pre + "self_attn.v_proj.bias"), dy: ws.dv.pointer, n: n, outDim: config.kvDim)
            }
            Profiler.time("matmul.bwd") {
                Linear.backward(dx: ws.dNorm.pointer, dw: g(pre + "self_attn.q_proj.weight"), dy: dqLin, x: ws.norm1[l].pointer,
                                w: weight(pre + "self_attn.q_proj.weight"), n: n, inDim: c, outDim: config.qDim, precision: matmulPrecision)
            }
            Profiler.time("matmul.bwd") {
                Linear.backward(dx: ws.dNorm.pointer, dw: g(pre + "self_attn.k_proj.weight"), dy: dkLin, x: ws.norm1[l].pointer,
                                w: weight(pre + "self_attn.k_proj.weight"), n: n, inDim: c, outDim: config.kvDim, accumulateDx: true, precision: matmulPrecision)
            }
            Profiler.time("matmul.bwd") {
                Linear.backward(dx: ws.dNorm.pointer, dw: g(pre + "self_attn.v_proj.weight"), dy: ws.dv.pointer, x: ws.norm1[l].pointer,
                                w: weight(pre + "self_attn.v_proj.weight"), n: n, inDim: c, outDim: config.kvDim, accumulateDx: true, precision: matmulPrecision)
            }
            sumOverTensorParallelRanks(ws.dNorm.pointer, count: n * c)   // q/k/v are column-parallel
            Profiler.time("norm.bwd") {
                RMSNorm.backward(dx: dRes, dw: g(pre + "input_layernorm.weight"), dy: ws.dNorm.pointer, x: ws.residual[l].pointer,
                                 w: weight(pre + "input_layernorm.weight"), rstd: ws.rstd1[l].pointer, n: n, c: c,
                                 partials: ws.normPartials.pointer)
            }
        }
        Profiler.time("embedding.bwd") {
            Embedding.backward(dTable: g("model.embed_tokens.weight"), dOut: dRes, tokens: ws.tokenIds, n: n, c: c, rows: vocabRows)
        }
    }

    /// Tensor parallel: the QK-norm weights are replicated, but each rank's backward saw them only
    /// through its own heads, so their accumulated gradients are summed over the ranks (once per
    /// step, after every micro-batch). Every other replicated tensor's gradient is already whole.
    public func sumPartialGradientsOverTensorParallelRanks() throws {
        guard config.qkNorm, let tp = tensorParallel, tp.plan.size > 1 else { return }
        for l in 0..<config.numHiddenLayers {
            for name in ["self_attn.q_norm.weight", "self_attn.k_norm.weight"] {
                sumOverTensorParallelRanks(g("model.layers.\(l)." + name), count: config.headDim)
            }
        }
        try throwTensorParallelError()
    }

    /// Logits [B·T, V] for every position of `batch` (for tests and evaluation of small inputs).
    /// Each target's −log p (0 where the target is −1), unweighted, from a forward without gradients.
    public func tokenLosses(_ batch: TokenBatch) throws -> [Float] {
        var b = batch
        b.lossWeights = nil
        try forward(b, computeGradients: false)
        return Array(UnsafeBufferPointer(start: workspace!.head.tokenLosses, count: b.batch * b.seqLen))
    }

    public func logits(_ batch: TokenBatch) throws -> [Float] {
        try forward(batch, computeGradients: false)
        let ws = workspace!, n = ws.tokens, c = config.hiddenSize, v = config.vocabSize
        var out = [Float](repeating: 0, count: n * v)
        out.withUnsafeMutableBufferPointer { o in
            GEMM.multiply(matmulPrecision, transB: true, m: n, n: v, k: c, a: ws.finalNorm.pointer, lda: c, b: weight(headName), ldb: c,
                          c: o.baseAddress!, ldc: v)
        }
        return out
    }

    /// Drops the activation buffers (e.g. before switching between training and sampling shapes).
    public func releaseWorkspace() { workspace = nil }
}
