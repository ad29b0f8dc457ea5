import SmolTensor

/// Megatron-style tensor parallelism of the Llama block over `size` ranks:
///
///     x ─ RMSNorm ─┬─ q/k/v (column-parallel: rank r holds heads r·H/T ..< (r+1)·H/T) ─ attention ─ o_proj (row-parallel) ─ Σ ranks ─ + x
///     x ─ RMSNorm ─┴─ gate/up (column-parallel: units r·F/T ..< (r+1)·F/T) ─ SwiGLU ─ down_proj (row-parallel) ─ Σ ranks ─ + x
///
/// A column-parallel matrix [out, in] keeps its rows of rank r; a row-parallel one [out, in] its
/// columns. Each rank's row-parallel output is a partial sum, all-reduced in the forward; in the
/// backward the input gradient of a column-parallel matrix is the partial one, all-reduced before
/// the norm. Norms are replicated: every rank computes them whole, on the same inputs, so their
/// gradients agree without communication, except the per-head QK-norm weights, which each rank sees
/// only through its own heads (their gradient is summed over the ranks).
///
/// The embedding and the output head are vocabulary-parallel when the vocabulary divides by the
/// ranks (rank r holds token rows r·V/T ..< (r+1)·V/T): the lookup is summed over the ranks, and the
/// cross-entropy combines each rank's row maxima and exponential sums (CrossEntropyHead), so no rank
/// computes the whole [tokens, V] logits. Otherwise they are replicated.
public struct TensorParallelPlan: Sendable, Equatable {
    public let size: Int, rank: Int
    /// The whole model's vocabulary, and whether its rows are split over the ranks.
    public let vocabSize: Int
    public let vocabParallel: Bool

    public init(size: Int, rank: Int, vocabSize: Int) {
        precondition(size >= 1 && rank >= 0 && rank < size)
        self.size = size; self.rank = rank; self.vocabSize = vocabSize
        vocabParallel = size > 1 && vocabSize % size == 0
    }

    /// This rank's token rows of a vocabulary-parallel embedding or head.
    public var vocabRange: Range<Int> {
        vocabParallel ? rank * (vocabSize / size) ..< (rank + 1) * (vocabSize / size) : 0..<vocabSize
    }

    /// How a tensor is cut across the ranks.
    public enum Split: Sendable { case replicated, rows, columns }

    public func split(of name: String) -> Split { TensorParallelPlan.split(of: name, vocabParallel: vocabParallel) }

    public static func split(of name: String, vocabParallel: Bool) -> Split {
        if name == "model.embed_tokens.weight" || name == "lm_head.weight" { return vocabParallel ? .rows : .replicated }
        for suffix in ["q_proj.weight", "k_proj.weight", "v_proj.weight", "q_proj.bias", "k_proj.bias", "v_proj.bias",
                       "gate_proj.weight", "up_proj.weight"] where name.hasSuffix(suffix) { return .rows }
        if name.hasSuffix("o_proj.weight") || name.hasSuffix("down_proj.weight") { return .columns }
        return .replicated
    }

    /// The first key of `config` that does not divide by `size`, with why (nil when it splits).
    public static func indivisible(_ config: LlamaConfig, size: Int) -> (key: String, reason: String)? {
        if config.numKeyValueHeads % size != 0 {
            return ("model.num_key_value_heads", "\(config.numKeyValueHeads) key/value heads do not divide over tp = \(size) ranks")
        }
        if config.numAttentionHeads % size != 0 {
            return ("model.num_attention_heads", "\(config.numAttentionHeads) attention heads do not divide over tp = \(size) ranks")
        }
        if config.intermediateSize % size != 0 {
            return ("model.intermediate_size", "\(config.intermediateSize) does not divide over tp = \(size) ranks")
        }
        return nil
    }

    /// The model one rank holds: H/T query heads, KV/T key/value heads, F/T intermediate units, the
    /// head dimension unchanged. Its parameters carry the full model's names, in the same order.
    public func localConfig(_ full: LlamaConfig) -> LlamaConfig {
        precondition(TensorParallelPlan.indivisible(full, size: size) == nil, "validated by the caller")
        guard size > 1 else { return full }
        var c = full
        if vocabParallel { c.vocabSize = full.vocabSize / size }
        c.headDimOverride = full.headDim
        c.numAttentionHeads = full.numAttentionHeads / size
        c.numKeyValueHeads = full.numKeyValueHeads / size
        c.intermediateSize = full.intermediateSize / size
        return c
    }

    /// The full tensor's shape from one rank's.
    public func fullShape(of name: String, local shape: [Int]) -> [Int] {
        switch split(of: name) {
        case .replicated: return shape
        case .rows: return [shape[0] * size] + shape.dropFirst()
        case .columns: return [shape[0], shape[1] * size]
        }
    }

    /// Rank `r`'s part of `full` (shape `fullShape`) into `local`.
    public static func extract(_ split: Split, full: UnsafePointer<Float>, fullShape: [Int], size: Int, rank r: Int,
                               into local: UnsafeMutablePointer<Float>) {
        let count = fullShape.reduce(1, *)
        switch split {
        case .replicated: local.update(from: full, count: count)
        case .rows:
            let part = count / size
            local.update(from: full + r * part, count: part)
        case .columns:
            let rows = fullShape[0], cols = fullShape[1], w = cols / size
            for i in 0..<rows { (local + i * w).update(from: full + i * cols + r * w, count: w) }
        }
    }

    /// The inverse: rank `r`'s `local` written into its place in `full`.
    public static func insert(_ split: Split, local: UnsafePointer<Float>, fullShape: [Int], size: Int, rank r: Int,
                              into full: UnsafeMutablePointer<Float>) {
        let count = fullShape.reduce(1, *)
        switch split {
        case .replicated: full.update(from: local, count: count)
        case .rows:
            let part = count / size
            (full + r * part).update(from: local, count: part)
        case .columns:
            let rows = fullShape[0], cols = fullShape[1], w = cols / size
            for i in 0..<rows { (full + i * cols + r * w).update(from: local + i * w, count: w) }
        }
    }
}

/// A model's place in a tensor-parallel group: the plan and the group's collectives.
public struct TensorParallel {
    public let plan: TensorParallelPlan
    public let group: Collectives
    /// `vocabSize`: the whole model's.
    public init(group: Collectives, vocabSize: Int) {
        self.group = group
        plan = TensorParallelPlan(size: group.size, rank: group.rank, vocabSize: vocabSize)
    }
}

extension TensorParallel {
    /// Every rank's shards of `local` (laid out as `store`, this rank's) gathered whole into
    /// `full`'s buffer, laid out as its store (the whole model's). Every rank of the group calls
    /// it; those that only send pass `full` nil.
    public func gather(_ local: UnsafePointer<Float>, store: ParameterStore,
                       into full: (store: ParameterStore, values: UnsafeMutablePointer<Float>)?) throws {
        for (i, s) in store.slots.enumerated() {
            let split = plan.split(of: s.name), at = full.map { $0.values + $0.store.slots[i].offset }
            if split == .replicated || plan.size == 1 {
                at?.update(from: local + s.offset, count: s.count)
                continue
            }
            let blocks = FloatBuffer(count: s.count * plan.size)
            (blocks.pointer + plan.rank * s.count).update(from: local + s.offset, count: s.count)
            try group.allGather(blocks.pointer, shards: (0..<plan.size).map { $0 * s.count ..< ($0 + 1) * s.count })
            guard let at else { continue }
            for r in 0..<plan.size {
                TensorParallelPlan.insert(split, local: blocks.pointer + r * s.count, fullShape: plan.fullShape(of: s.name, local: s.shape),
                                          size: plan.size, rank: r, into: at)
            }
        }
    }
}

extension ParameterStore {
    /// This store's tensors taken from `full`, a whole model's store: each tensor whole, or the
    /// part of it that tensor-parallel rank `plan.rank` holds.
    public func load(from full: ParameterStore, plan: TensorParallelPlan) {
        for (s, t) in zip(slots, full.slots) {
            TensorParallelPlan.extract(plan.size > 1 ? plan.split(of: s.name) : .replicated, full: full.values.pointer + t.offset,
                                       fullShape: t.shape, size: plan.size, rank: plan.rank, into: values.pointer + s.offset)
        }
    }
}
