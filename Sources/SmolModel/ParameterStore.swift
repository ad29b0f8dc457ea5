import SmolTensor

/// One named tensor inside a flat buffer (parameters, their gradients and optimizer moments all
/// share this layout, so the optimizer and checkpoints walk one array).
public struct TensorSlot: Sendable {
    public let name: String
    public let shape: [Int]
    public let offset: Int
    public var count: Int { shape.reduce(1, *) }
}

/// The model's parameters with Hugging Face names, laid out contiguously in one buffer.
public final class ParameterStore {
    public let slots: [TensorSlot]
    public let index: [String: Int]
    public let values: FloatBuffer
    public var count: Int { values.count }

    public init(config: LlamaConfig) {
        var slots: [TensorSlot] = []
        var offset = 0
        func add(_ name: String, _ shape: [Int]) {
            slots.append(TensorSlot(name: name, shape: shape, offset: offset))
            // Keep every tensor 64-byte aligned (16 floats) so SIMD loads stay aligned.
            offset += (shape.reduce(1, *) + 15) / 16 * 16
        }
        let c = config.hiddenSize, f = config.intermediateSize
        add("model.embed_tokens.weight", [config.vocabSize, c])
        for l in 0..<config.numHiddenLayers {
            let p = "model.layers.\(l)."
            add(p + "input_layernorm.weight", [c])
            add(p + "self_attn.q_proj.weight", [config.qDim, c])
            add(p + "self_attn.k_proj.weight", [config.kvDim, c])
            add(p + "self_attn.v_proj.weight", [config.kvDim, c])
            if config.qkvBias {
                add(p + "self_attn.q_proj.bias", [config.qDim])
                add(p + "self_attn.k_proj.bias", [config.kvDim])
                add(p + "self_attn.v_proj.bias", [config.kvDim])
            }
            if config.qkNorm {
                add(p + "self_attn.q_norm.weight", [config.headDim])
                add(p + "self_attn.k_norm.weight", [config.headDim])
            }
            add(p + "self_attn.o_proj.weight", [c, config.qDim])
            add(p + "post_attention_layernorm.weight", [c])
            add(p + "mlp.gate_proj.weight", [f, c])
            add(p + "mlp.up_proj.weight", [f, c])
            add(p + "mlp.down_proj.weight", [c, f])
        }
        add("model.norm.weight", [c])
        if !config.tieWordEmbeddings { add("lm_head.weight", [config.vocabSize, c]) }
        self.slots = slots
        var index: [String: Int] = [:]
        for (i, s) in slots.enumerated() { index[s.name] = i }
        self.index = index
        values = FloatBuffer(count: offset)
    }

    public func slot(_ name: String) -> TensorSlot { slots[index[name]!] }
    public func has(_ name: String) -> Bool { index[name] != nil }
    public func pointer(_ name: String, in buffer: FloatBuffer) -> UnsafeMutablePointer<Float> {
        buffer.pointer + slot(name).offset
    }

    /// Sum of the element counts of all tensors (the padding between them excluded).
    public var parameterCount: Int { slots.reduce(0) { $0 + $1.count } }

    /// FNV-1a 64 of every tensor's name, shape and float32 values: a model's identity in provenance
    /// records and caches (the same weights, whatever file they came from, give the same value).
    public func fingerprint() -> String {
        var h = FNV1a64()
        for s in slots {
            h.add(Array(s.name.utf8)); for d in s.shape { h.add(d) }
            h.add(words: values.pointer + s.offset, count: s.count)
        }
        return h.hex
    }

    /// Norm weights start at one and biases at zero; every matrix draws N(0, std²) from its own
    /// stream, keyed by (seed, "init " + the tensor's name), over the whole unsharded tensor. A
    /// tensor-parallel rank (`tensorParallel`, this store holding its shard) draws the whole tensor
    /// and keeps its part, so every topology starts from the same model and no two shards can
    /// share a stream. `sharedSeedFault` reintroduces the playbook's bug for the drill: every rank
    /// takes its shard from the start of the stream, as ranks seeded alike would, so all hold the same.
    public func initialize(seed: UInt64, std: Float, tensorParallel plan: TensorParallelPlan? = nil, sharedSeedFault: Bool = false) {
        for s in slots {
            let p = values.pointer + s.offset
            if s.shape.count == 1 {
                p.update(repeating: s.name.hasSuffix(".bias") ? 0 : 1, count: s.count)
                continue
            }
            var rng = RandomStream(seed: seed, purpose: "init " + s.name)
            let split = plan?.split(of: s.name) ?? .replicated
            guard let plan, plan.size > 1, split != .replicated, !sharedSeedFault else {
                for j in 0..<s.count { p[j] = rng.nextNormal() * std }
                continue
            }
            let shape = plan.fullShape(of: s.name, local: s.shape)
            let full = UnsafeMutablePointer<Float>.allocate(capacity: shape.reduce(1, *))
            defer { full.deallocate() }
            for j in 0..<shape.reduce(1, *) { full[j] = rng.nextNormal() * std }
            TensorParallelPlan.extract(split, full: full, fullShape: shape, size: plan.size, rank: plan.rank, into: p)
        }
    }

    /// Fire drill: the playbook's tensor-parallel seed bug. As if every matrix had been initialised
    /// on `ranks` tensor-parallel ranks that shared one seed, the ranks' shards are copies of the
    /// first: column-parallel matrices (q, k, v, gate, up, embeddings) repeat their first
    /// rows/ranks rows, row-parallel ones (o_proj, down_proj) their first cols/ranks columns. The
    /// copied units start identical and, with identical outgoing weights too, stay identical.
    public func duplicateTensorParallelShards(ranks: Int) {
        guard ranks > 1 else { return }
        for s in slots where s.shape.count == 2 {
            let rows = s.shape[0], cols = s.shape[1], p = values.pointer + s.offset
            if s.name.hasSuffix("o_proj.weight") || s.name.hasSuffix("down_proj.weight") {
                guard cols % ranks == 0 else { continue }
                let w = cols / ranks
                for r in 0..<rows { for k in 1..<ranks { (p + r * cols + k * w).update(from: p + r * cols, count: w) } }
            } else {
                guard rows % ranks == 0 else { continue }
                let h = rows / ranks
                for k in 1..<ranks { (p + k * h * cols).update(from: p, count: h * cols) }
            }
        }
    }
}
