import Foundation
import SmolData
import SmolModel
import SmolTensor
import SmolWeights
import Yams

/// A named data source: its shards and its default mixture weight.
public struct DataSourceConfig: Codable, Equatable, Sendable {
    public var name: String
    /// Token shard paths (globs allowed), relative to the config file's directory.
    public var shards: [String]
    public var weight: Double = 1

    enum CodingKeys: String, CodingKey, CaseIterable { case name, shards, weight }
    public init(name: String, shards: [String], weight: Double = 1) { self.name = name; self.shards = shards; self.weight = weight }
    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.rawValue), section: "data.sources[]")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        shards = try c.decode([String].self, forKey: .shards)
        weight = try c.decodeIfPresent(Double.self, forKey: .weight) ?? 1
    }
}

/// Mixture weights by source name from a global token count on.
public struct DataStageConfig: Codable, Equatable, Sendable {
    public var startTokens: Int
    public var weights: [String: Double]

    enum CodingKeys: String, CodingKey, CaseIterable { case startTokens = "start_tokens", weights }
    public init(startTokens: Int, weights: [String: Double]) { self.startTokens = startTokens; self.weights = weights }
    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.rawValue), section: "data.stages[]")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        startTokens = try c.decode(Int.self, forKey: .startTokens)
        weights = try c.decode([String: Double].self, forKey: .weights)
    }
}

/// A long-context stage: from `start_tokens` on, rows of `seq_len` tokens and RoPE base
/// `rope_theta` (SmolLM3: 4k → 32k → 64k by raising θ); `micro_batch` defaults to keeping
/// micro_batch × seq_len as before (at least 1).
public struct ContextStageConfig: Codable, Equatable, Sendable {
    public var startTokens: Int
    public var seqLen: Int
    public var ropeTheta: Double?
    public var microBatch: Int?

    enum CodingKeys: String, CodingKey, CaseIterable { case startTokens = "start_tokens", seqLen = "seq_len", ropeTheta = "rope_theta", microBatch = "micro_batch" }
    public init(startTokens: Int, seqLen: Int, ropeTheta: Double? = nil, microBatch: Int? = nil) {
        self.startTokens = startTokens; self.seqLen = seqLen; self.ropeTheta = ropeTheta; self.microBatch = microBatch
    }
    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.rawValue), section: "training.context_stages[]")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        startTokens = try c.decode(Int.self, forKey: .startTokens)
        seqLen = try c.decode(Int.self, forKey: .seqLen)
        ropeTheta = try c.decodeIfPresent(Double.self, forKey: .ropeTheta)
        microBatch = try c.decodeIfPresent(Int.self, forKey: .microBatch)
    }
}

/// The shape a run trains at over a stretch of tokens: stage 0 is the `training` section's own.
public struct ContextStage: Equatable, Sendable {
    public var startTokens: Int, seqLen: Int, microBatch: Int
    public var ropeTheta: Double
}

/// Where the training data comes from: either `train` (one source) or named `sources` with
/// weights, optionally switched by `stages` at token counts.
public struct DataConfig: Codable, Equatable, Sendable {
    /// Token shard paths (globs allowed), relative to the config file's directory.
    public var train: [String] = []
    public var sources: [DataSourceConfig] = []
    public var stages: [DataStageConfig] = []
    /// Held-out shards; when empty, the last `validation_fraction` of each training shard is held out.
    public var validation: [String] = []
    public var validationFraction: Double = 0.05
    /// A warning is logged when a source is repeated beyond this many epochs.
    public var maxEpochs: Double = 4
    /// The tokenizer.json the shards were made with (default: the byte-level tokenizer); used for
    /// samples and saved with checkpoints.
    public var tokenizer: String?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case train, sources, stages, validation, validationFraction = "validation_fraction", maxEpochs = "max_epochs", tokenizer
    }
    public init() {}
    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.rawValue), section: "data")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        train = try c.decodeIfPresent([String].self, forKey: .train) ?? []
        sources = try c.decodeIfPresent([DataSourceConfig].self, forKey: .sources) ?? []
        stages = try c.decodeIfPresent([DataStageConfig].self, forKey: .stages) ?? []
        validation = try c.decodeIfPresent([String].self, forKey: .validation) ?? []
        validationFraction = try c.decodeIfPresent(Double.self, forKey: .validationFraction) ?? 0.05
        maxEpochs = try c.decodeIfPresent(Double.self, forKey: .maxEpochs) ?? 4
        tokenizer = try c.decodeIfPresent(String.self, forKey: .tokenizer)
    }

    /// The sources to draw from: `sources`, or one source "train" made of `train`.
    public var resolvedSources: [DataSourceConfig] { sources.isEmpty ? [DataSourceConfig(name: "train", shards: train)] : sources }

    /// Stages as weight vectors in source order; without `stages`, one stage of the sources' weights.
    public func mixtureStages() throws -> [MixtureStage] {
        let src = resolvedSources
        func bad(_ k: String, _ r: String) -> ConfigError { .invalidValue(key: "data." + k, reason: r) }
        if train.isEmpty == sources.isEmpty { throw bad("train", "give either data.train or data.sources") }
        if Set(src.map(\.name)).count != src.count { throw bad("sources", "source names must be unique") }
        for s in src where !(s.weight >= 0 && s.weight.isFinite) { throw bad("sources", "weight of '\(s.name)' must be a non-negative number") }
        if stages.isEmpty {
            guard src.contains(where: { $0.weight > 0 }) else { throw bad("sources", "all weights are zero") }
            return [MixtureStage(startTokens: 0, weights: src.map(\.weight))]
        }
        var out: [MixtureStage] = []
        for (i, st) in stages.enumerated() {
            for k in st.weights.keys where !src.contains(where: { $0.name == k }) { throw bad("stages[\(i)].weights", "'\(k)' is not a source") }
            let w = src.map { st.weights[$0.name] ?? 0 }
            guard w.allSatisfy({ $0 >= 0 && $0.isFinite }), w.contains(where: { $0 > 0 }) else {
                throw bad("stages[\(i)].weights", "weights must be non-negative with at least one positive")
            }
            if st.startTokens < 0 { throw bad("stages[\(i)].start_tokens", "must be non-negative") }
            out.append(MixtureStage(startTokens: st.startTokens, weights: w))
        }
        if !out.contains(where: { $0.startTokens == 0 }) { throw bad("stages", "one stage must start at start_tokens: 0") }
        return out.sorted { $0.startTokens < $1.startTokens }
    }
}

/// The loop: batch shape, length of the run, evaluation and checkpoint cadence, seed.
/// What the step learns from: every next token (pretraining), only the tokens chat shards' loss
/// masks mark (SFT: assistant content and end-of-turn, conversations packed per row), or pairs of
/// completions from preference shards (DPO, APO-zero, APO-down against the frozen init model).
public enum TrainingObjective: String, Codable, Sendable, CaseIterable {
    case pretrain, sft, dpo
    case apoZero = "apo_zero"
    case apoDown = "apo_down"

    /// The preference objective, nil for pretraining and SFT.
    public var preference: PreferenceObjective? { PreferenceObjective(rawValue: rawValue) }
    /// Whether the data are chat shards with loss masks (SFT and preference pairs).
    public var usesChatData: Bool { self != .pretrain }
}

/// The mean an SFT step's loss takes: over assistant tokens (each token weighs the same), or over
/// conversations (each conversation's tokens share a weight of one).
public enum LossNormalization: String, Codable, Sendable, CaseIterable { case token, sequence }

/// `training.distill`: learn from a teacher's distribution as well as the data's next tokens
/// (DistillationTarget: (1 − alpha) · CE + alpha · T² · KL(teacher ‖ student)). The teacher runs
/// forward only; it must share the student's tokenizer.
public struct DistillConfig: Codable, Equatable, Sendable {
    /// The teacher: a GGUF file (any type; its weights are dequantised), an HF directory, a checkpoint or a run.
    public var teacher: String
    /// The weight of the distillation term (0: cross-entropy alone, 1: distillation alone).
    public var alpha: Double = 0.5
    public var temperature: Double = 1
    /// Keep only the teacher's k most likely tokens per position (renormalised); nil: its whole distribution.
    public var topK: Int?
    /// A directory for the teacher's top-k logits (needs top_k): runs over the same data reuse them.
    public var cache: String?

    enum CodingKeys: String, CodingKey, CaseIterable { case teacher, alpha, temperature, topK = "top_k", cache }
    public init(teacher: String) { self.teacher = teacher }
    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.rawValue), section: "training.distill")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        teacher = try c.decode(String.self, forKey: .teacher)
        alpha = try c.decodeIfPresent(Double.self, forKey: .alpha) ?? 0.5
        temperature = try c.decodeIfPresent(Double.self, forKey: .temperature) ?? 1
        topK = try c.decodeIfPresent(Int.self, forKey: .topK)
        cache = try c.decodeIfPresent(String.self, forKey: .cache)
    }

    func validate(vocabSize: Int) throws {
        func bad(_ k: String, _ r: String) -> ConfigError { .invalidValue(key: "training.distill." + k, reason: r) }
        if teacher.isEmpty { throw bad("teacher", "expected the path of a model") }
        if !(alpha >= 0 && alpha <= 1) { throw bad("alpha", "must be in 0...1, got \(alpha)") }
        if !(temperature > 0 && temperature.isFinite && temperature <= 100) { throw bad("temperature", "must be in (0, 100], got \(temperature)") }
        if let k = topK, k < 1 || k > vocabSize { throw bad("top_k", "must be in 1...\(vocabSize) (model.vocab_size), got \(k)") }
        if cache != nil && topK == nil { throw bad("cache", "caches the teacher's top-k logits: set training.distill.top_k too") }
    }
}

public struct TrainingConfig: Codable, Equatable, Sendable {
    public var objective: TrainingObjective = .pretrain
    /// Knowledge distillation from a teacher (pretraining and SFT objectives).
    public var distill: DistillConfig?
    /// Preference objectives: β, the strength of the pull towards the reference model (trl's default 0.1).
    public var beta: Double = 0.1
    public var lossNormalization: LossNormalization = .token
    /// The GEMMs' input format: fp32, or bf16 (AVX512-BF16, float32 sums; master weights, AdamW
    /// state, norms, softmax and loss stay float32). Falls back to fp32 with a notice on CPUs
    /// without AVX512-BF16.
    public var precision: MatmulPrecision = .fp32
    public var seqLen: Int = 256
    public var microBatch: Int = 8
    /// Tokens per optimizer step; a multiple of micro_batch × seq_len (gradient accumulation).
    public var tokensPerBatch: Int?
    public var steps: Int?
    /// Alternative to `steps`: train until this many tokens have been seen.
    public var tokenBudget: Int?
    public var evalEvery: Int = 50
    public var evalBatches: Int = 4
    public var checkpointEvery: Int = 100
    public var keepCheckpoints: Int = 3
    public var seed: UInt64 = 1234
    /// Peak FLOP/s for MFU, in GFLOP/s; measured with a GEMM probe when absent.
    public var peakGflops: Double?
    /// Prompts sampled at the end of the run.
    public var samplePrompts: [String] = []
    public var sampleTokens: Int = 120
    /// Evaluation task files (relative to the config) run at eval points beside the held-out loss.
    public var evalTasks: [String] = []
    /// Run the tasks every this many steps (a multiple of eval_every; default: every eval point).
    public var evalTasksEvery: Int?
    /// Score only the first N items of each task (keeps in-training evaluation cheap).
    public var evalTasksLimit: Int?
    /// Long-context stages after the first (whose shape is this section's seq_len and micro_batch
    /// and the model's rope_theta).
    public var contextStages: [ContextStageConfig] = []
    /// Run `smol preflight` (under the same mpirun) before step 1 and stop on a FAIL.
    public var preflight = false
    /// The GEMM GFLOP/s each rank should reach (preflight's --expect-gemm-gflops); without it ranks
    /// are compared with their median only.
    public var preflightGemmGflops: Double?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case objective, beta, lossNormalization = "loss_normalization", seqLen = "seq_len", microBatch = "micro_batch", tokensPerBatch = "tokens_per_batch", steps
        case tokenBudget = "token_budget", evalEvery = "eval_every", evalBatches = "eval_batches"
        case checkpointEvery = "checkpoint_every", keepCheckpoints = "keep_checkpoints", seed
        case peakGflops = "peak_gflops", samplePrompts = "sample_prompts", sampleTokens = "sample_tokens"
        case evalTasks = "eval_tasks", evalTasksEvery = "eval_tasks_every", evalTasksLimit = "eval_tasks_limit"
        case preflight, preflightGemmGflops = "preflight_gemm_gflops", contextStages = "context_stages", distill, precision
    }
    public init() {}
    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.rawValue), section: "training")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = TrainingConfig()
        objective = try c.decodeIfPresent(TrainingObjective.self, forKey: .objective) ?? d.objective
        beta = try c.decodeIfPresent(Double.self, forKey: .beta) ?? d.beta
        lossNormalization = try c.decodeIfPresent(LossNormalization.self, forKey: .lossNormalization) ?? d.lossNormalization
        seqLen = try c.decodeIfPresent(Int.self, forKey: .seqLen) ?? d.seqLen
        microBatch = try c.decodeIfPresent(Int.self, forKey: .microBatch) ?? d.microBatch
        tokensPerBatch = try c.decodeIfPresent(Int.self, forKey: .tokensPerBatch)
        steps = try c.decodeIfPresent(Int.self, forKey: .steps)
        tokenBudget = try c.decodeIfPresent(Int.self, forKey: .tokenBudget)
        evalEvery = try c.decodeIfPresent(Int.self, forKey: .evalEvery) ?? d.evalEvery
        evalBatches = try c.decodeIfPresent(Int.self, forKey: .evalBatches) ?? d.evalBatches
        checkpointEvery = try c.decodeIfPresent(Int.self, forKey: .checkpointEvery) ?? d.checkpointEvery
        keepCheckpoints = try c.decodeIfPresent(Int.self, forKey: .keepCheckpoints) ?? d.keepCheckpoints
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? d.seed
        peakGflops = try c.decodeIfPresent(Double.self, forKey: .peakGflops)
        samplePrompts = try c.decodeIfPresent([String].self, forKey: .samplePrompts) ?? d.samplePrompts
        sampleTokens = try c.decodeIfPresent(Int.self, forKey: .sampleTokens) ?? d.sampleTokens
        evalTasks = try c.decodeIfPresent([String].self, forKey: .evalTasks) ?? []
        evalTasksEvery = try c.decodeIfPresent(Int.self, forKey: .evalTasksEvery)
        evalTasksLimit = try c.decodeIfPresent(Int.self, forKey: .evalTasksLimit)
        preflight = try c.decodeIfPresent(Bool.self, forKey: .preflight) ?? false
        contextStages = try c.decodeIfPresent([ContextStageConfig].self, forKey: .contextStages) ?? []
        preflightGemmGflops = try c.decodeIfPresent(Double.self, forKey: .preflightGemmGflops)
        distill = try c.decodeIfPresent(DistillConfig.self, forKey: .distill)
        precision = try c.decodeIfPresent(MatmulPrecision.self, forKey: .precision) ?? d.precision
    }

    public var batchTokens: Int { tokensPerBatch ?? microBatch * seqLen }
    public var accumulationSteps: Int { accumulationSteps(dataParallel: 1) }
    /// Micro-batches per rank per step: tokens_per_batch is the global batch, micro_batch per rank.
    public func accumulationSteps(dataParallel dp: Int) -> Int { batchTokens / (microBatch * seqLen * dp) }
    public func accumulationSteps(dataParallel dp: Int, stage: ContextStage) -> Int { batchTokens / (stage.microBatch * stage.seqLen * dp) }

    /// Checks that the global batch splits over `dp` ranks, naming the keys.
    public func validate(dataParallel dp: Int) throws {
        if batchTokens % (microBatch * seqLen * dp) != 0 {
            throw ConfigError.invalidValue(key: "training.tokens_per_batch", reason:
                "\(batchTokens) is not a multiple of training.micro_batch × training.seq_len × parallel.dp = \(microBatch) × \(seqLen) × \(dp)")
        }
        for (i, st) in stages(ropeTheta: 1).enumerated().dropFirst() where batchTokens % (st.microBatch * st.seqLen * dp) != 0 {
            throw ConfigError.invalidValue(key: "training.context_stages[\(i - 1)].micro_batch", reason:
                "tokens_per_batch \(batchTokens) is not a multiple of micro_batch × seq_len × parallel.dp = \(st.microBatch) × \(st.seqLen) × \(dp)")
        }
    }
    public var totalSteps: Int { steps ?? ((tokenBudget ?? 0) + batchTokens - 1) / max(batchTokens, 1) }

    /// Every context stage, the first being this section's shape at `ropeTheta` (the model's).
    public func stages(ropeTheta: Double) -> [ContextStage] {
        var out = [ContextStage(startTokens: 0, seqLen: seqLen, microBatch: microBatch, ropeTheta: ropeTheta)]
        for c in contextStages {
            let last = out[out.count - 1]
            out.append(ContextStage(startTokens: c.startTokens, seqLen: c.seqLen,
                                    microBatch: c.microBatch ?? max(1, last.microBatch * last.seqLen / max(c.seqLen, 1)),
                                    ropeTheta: c.ropeTheta ?? last.ropeTheta))
        }
        return out
    }

    /// The index of the stage in force for a step that starts at `tokens` tokens.
    public func stageIndex(ropeTheta: Double, atTokens tokens: Int) -> Int {
        stages(ropeTheta: ropeTheta).lastIndex { $0.startTokens <= tokens } ?? 0
    }

    /// Steps are whole: a stage starts at the first step boundary at or after its start_tokens.
    public func firstStep(ofStage k: Int, ropeTheta: Double) -> Int {
        let start = stages(ropeTheta: ropeTheta)[k].startTokens
        return (start + batchTokens - 1) / batchTokens
    }

    public func validate(maxPositions: Int) throws {
        func bad(_ k: String, _ r: String) -> ConfigError { .invalidValue(key: "training." + k, reason: r) }
        if seqLen <= 0 { throw bad("seq_len", "must be positive, got \(seqLen)") }
        if seqLen > maxPositions { throw bad("seq_len", "\(seqLen) exceeds model.max_position_embeddings \(maxPositions)") }
        if microBatch <= 0 { throw bad("micro_batch", "must be positive, got \(microBatch)") }
        if microBatch > 1 << 24 { throw bad("micro_batch", "\(microBatch) is beyond any batch this can hold (at most \(1 << 24))") }
        if let t = tokensPerBatch, t <= 0 || t > 1 << 40 { throw bad("tokens_per_batch", "must be in 1...2^40, got \(t)") }
        if lossNormalization == .sequence && objective != .sft { throw bad("loss_normalization", "sequence applies to objective: sft") }
        if !(beta > 0 && beta.isFinite) { throw bad("beta", "must be a positive number, got \(beta)") }
        if batchTokens <= 0 || batchTokens % (microBatch * seqLen) != 0 {
            throw bad("tokens_per_batch", "\(batchTokens) is not a positive multiple of micro_batch × seq_len = \(microBatch * seqLen)")
        }
        if steps == nil && tokenBudget == nil { throw ConfigError.missingKey(key: "training.steps (or training.token_budget)") }
        if steps != nil && tokenBudget != nil {
            throw bad("token_budget", "give either training.steps or training.token_budget, not both")
        }
        if let s = steps, s <= 0 { throw bad("steps", "must be positive, got \(s)") }
        if let b = tokenBudget, b <= 0 { throw bad("token_budget", "must be positive, got \(b)") }
        if evalEvery < 0 { throw bad("eval_every", "must be ≥ 0 (0 disables), got \(evalEvery)") }
        if evalBatches <= 0 { throw bad("eval_batches", "must be positive, got \(evalBatches)") }
        if checkpointEvery < 0 { throw bad("checkpoint_every", "must be ≥ 0 (0 disables), got \(checkpointEvery)") }
        if keepCheckpoints < 1 { throw bad("keep_checkpoints", "must be ≥ 1, got \(keepCheckpoints)") }
        if let p = peakGflops, !(p > 0) { throw bad("peak_gflops", "must be positive, got \(p)") }
        if sampleTokens < 0 { throw bad("sample_tokens", "must be ≥ 0, got \(sampleTokens)") }
        if let e = evalTasksEvery {
            if e <= 0 { throw bad("eval_tasks_every", "must be positive, got \(e)") }
            if evalEvery == 0 || e % evalEvery != 0 { throw bad("eval_tasks_every", "\(e) is not a multiple of eval_every = \(evalEvery)") }
        }
        if !evalTasks.isEmpty && evalEvery == 0 { throw bad("eval_tasks", "needs eval_every > 0") }
        if let l = evalTasksLimit, l <= 0 { throw bad("eval_tasks_limit", "must be positive, got \(l)") }
        var previous = 0
        for (i, c) in contextStages.enumerated() {
            let key = "context_stages[\(i)]."
            if c.startTokens <= previous { throw bad(key + "start_tokens", "must be above the previous stage's (\(previous)), got \(c.startTokens)") }
            previous = c.startTokens
            if c.seqLen <= 0 || c.seqLen > maxPositions { throw bad(key + "seq_len", "must be in 1...\(maxPositions) (model.max_position_embeddings), got \(c.seqLen)") }
            if let t = c.ropeTheta, !(t > 0 && t.isFinite) { throw bad(key + "rope_theta", "must be a positive number, got \(t)") }
            if let m = c.microBatch, m <= 0 || m > 1 << 24 { throw bad(key + "micro_batch", "must be in 1...2^24, got \(m)") }
        }
        if distill != nil && objective.preference != nil {
            throw bad("distill", "distils next-token distributions (objective: pretrain or sft), not preference pairs")
        }
        if !contextStages.isEmpty && objective.preference != nil {
            throw bad("context_stages", "apply to pretraining and SFT; a preference run keeps one seq_len (its reference log-probs are per row)")
        }
        for (i, st) in stages(ropeTheta: 1).enumerated().dropFirst() where batchTokens % (st.microBatch * st.seqLen) != 0 {
            throw bad("context_stages[\(i - 1)].micro_batch", "tokens_per_batch \(batchTokens) is not a multiple of micro_batch \(st.microBatch) × seq_len \(st.seqLen); set the stage's micro_batch")
        }
    }
}

/// How the run spans processes: `dp` data-parallel replicas (default: world size / tp), `tp`
/// tensor-parallel ranks (Megatron-style, see TensorParallelPlan; world = dp × tp, a tensor-parallel
/// group being tp consecutive ranks), `zero` 0 or 1 (ZeRO-1 shards AdamW's moments over the
/// data-parallel ranks), `audit` (default on): the seed audit before step 1 (SeedAudit).
public struct ParallelConfig: Codable, Equatable, Sendable {
    public var dp: Int?
    public var tp = 1
    public var zero = 0
    public var audit = true

    enum CodingKeys: String, CodingKey, CaseIterable { case dp, tp, zero, audit }
    public init() {}
    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.rawValue), section: "parallel")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        dp = try c.decodeIfPresent(Int.self, forKey: .dp)
        tp = try c.decodeIfPresent(Int.self, forKey: .tp) ?? 1
        zero = try c.decodeIfPresent(Int.self, forKey: .zero) ?? 0
        audit = try c.decodeIfPresent(Bool.self, forKey: .audit) ?? true
    }

    /// `audit` only when off, so the configs of runs from before it read back unchanged.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(dp, forKey: .dp)
        try c.encode(tp, forKey: .tp); try c.encode(zero, forKey: .zero)
        if !audit { try c.encode(audit, forKey: .audit) }
    }

    public func validate() throws {
        func bad(_ k: String, _ r: String) -> ConfigError { .invalidValue(key: "parallel." + k, reason: r) }
        if let d = dp, d < 1 { throw bad("dp", "must be ≥ 1, got \(d)") }
        if tp < 1 || tp > 4096 { throw bad("tp", "must be between 1 and 4096, got \(tp)") }
        if zero != 0 && zero != 1 { throw bad("zero", "must be 0 or 1, got \(zero)") }
    }

    /// The data-parallel size for `world` processes; names the key when the sizes disagree.
    public func dataParallel(world: Int) throws -> Int {
        let d = dp ?? world / tp
        if d * tp != world || world % tp != 0 {
            throw ConfigError.invalidValue(key: dp == nil ? "parallel.tp" : "parallel.dp",
                                           reason: "dp \(d) × tp \(tp) = \(d * tp) does not match the \(world) processes started")
        }
        return d
    }
}

/// Fire drills that reintroduce a known failure in a real run, to show that it is caught.
/// `tp_shared_seed`: every tensor-parallel rank draws its shard from the same stream, the playbook's
/// 1-trillion-token bug (the seed audit stops such a run before step 1).
public struct FaultConfig: Codable, Equatable, Sendable {
    public var tpSharedSeed = false

    enum CodingKeys: String, CodingKey, CaseIterable { case tpSharedSeed = "tp_shared_seed" }
    public init() {}
    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.rawValue), section: "fault")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        tpSharedSeed = try c.decodeIfPresent(Bool.self, forKey: .tpSharedSeed) ?? false
    }
}

/// A whole training run's configuration: one YAML file with these sections.
public struct TrainConfig: Codable, Equatable, Sendable {
    public var model: LlamaConfig
    /// `model.init_from`: the weights to start from (a GGUF file, a Hugging Face directory, a
    /// checkpoint or a run directory), resolved against the config's directory. The model's keys
    /// then come from it; keys given beside it must agree.
    public var initFrom: String?
    public var optimizer = OptimizerConfig()
    public var schedule = ScheduleConfig()
    public var data = DataConfig()
    public var training = TrainingConfig()
    public var stability = StabilityConfig()
    /// Compare with a baseline run at matched tokens (nil: no guard).
    public var baseline: BaselineConfig?
    public var parallel = ParallelConfig()
    public var fault = FaultConfig()
    /// Directory the config file lives in; data paths are resolved against it.
    public var baseDirectory = "."

    enum CodingKeys: String, CodingKey, CaseIterable { case model, optimizer, schedule, data, training, stability, baseline, parallel, fault }
    enum ModelSectionKeys: String, CodingKey { case initFrom = "init_from" }
    /// Model keys that are training-time choices, not part of the weights: `init_from` lets them differ from the source.
    static let trainingModelKeys: Set<String> = ["intra_document_masking", "initializer_range"]

    public init(model: LlamaConfig) { self.model = model }

    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.rawValue), section: "")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decode(LlamaConfig.self, forKey: .model)
        initFrom = try c.nestedContainer(keyedBy: ModelSectionKeys.self, forKey: .model).decodeIfPresent(String.self, forKey: .initFrom)
        optimizer = try c.decodeIfPresent(OptimizerConfig.self, forKey: .optimizer) ?? OptimizerConfig()
        schedule = try c.decodeIfPresent(ScheduleConfig.self, forKey: .schedule) ?? ScheduleConfig()
        data = try c.decodeIfPresent(DataConfig.self, forKey: .data) ?? DataConfig()
        training = try c.decodeIfPresent(TrainingConfig.self, forKey: .training) ?? TrainingConfig()
        stability = try c.decodeIfPresent(StabilityConfig.self, forKey: .stability) ?? StabilityConfig()
        baseline = try c.decodeIfPresent(BaselineConfig.self, forKey: .baseline)
        parallel = try c.decodeIfPresent(ParallelConfig.self, forKey: .parallel) ?? ParallelConfig()
        fault = try c.decodeIfPresent(FaultConfig.self, forKey: .fault) ?? FaultConfig()
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        let modelSection = c.superEncoder(forKey: .model)
        try model.encode(to: modelSection)
        if let initFrom {
            var m = modelSection.container(keyedBy: ModelSectionKeys.self)
            try m.encode(initFrom, forKey: .initFrom)
        }
        try c.encode(optimizer, forKey: .optimizer)
        try c.encode(schedule, forKey: .schedule); try c.encode(data, forKey: .data); try c.encode(training, forKey: .training)
        try c.encode(stability, forKey: .stability); try c.encodeIfPresent(baseline, forKey: .baseline)
        try c.encode(parallel, forKey: .parallel)
        if fault != FaultConfig() { try c.encode(fault, forKey: .fault) }
    }

    public func validate() throws {
        try model.validate(); try optimizer.validate(); try schedule.validate()
        try training.validate(maxPositions: model.maxPositionEmbeddings)
        try training.distill?.validate(vocabSize: model.vocabSize)
        try stability.validate(); try baseline?.validate(); try parallel.validate()
        if parallel.tp > 1 {
            if training.distill != nil {
                throw ConfigError.invalidValue(key: "training.distill", reason: "distillation is not available with parallel.tp > 1 yet (the teacher runs whole on each rank; use data parallelism)")
            }
            if let bad = TensorParallelPlan.indivisible(model, size: parallel.tp) {
                throw ConfigError.invalidValue(key: bad.key, reason: bad.reason + " (parallel.tp)")
            }
            // Both score on rank 0's model alone, or per rank with ranks that may disagree; a shard cannot.
            if !training.evalTasks.isEmpty {
                throw ConfigError.invalidValue(key: "training.eval_tasks", reason: "task evaluation during training is not available with parallel.tp > 1; evaluate the checkpoints with smol eval")
            }
            if training.objective.preference != nil {
                throw ConfigError.invalidValue(key: "training.objective", reason: "preference objectives are not available with parallel.tp > 1 yet (their reference log-probs are cached per rank)")
            }
        }
        if fault.tpSharedSeed && parallel.tp < 2 {
            throw ConfigError.invalidValue(key: "fault.tp_shared_seed", reason: "reintroduces a tensor-parallel bug: it needs parallel.tp ≥ 2")
        }
        if stability.policy == .rollback && training.checkpointEvery == 0 {
            throw ConfigError.invalidValue(key: "stability.policy", reason: "rollback needs checkpoints (training.checkpoint_every > 0)")
        }
        if !(data.validationFraction >= 0 && data.validationFraction < 1) {
            throw ConfigError.invalidValue(key: "data.validation_fraction", reason: "must be in [0, 1), got \(data.validationFraction)")
        }
    }

    /// Loads a YAML config, applies `key.path=value` overrides, decodes and validates it.
    /// Every error names the file and the key.
    public static func load(path: String, overrides: [String] = []) throws -> TrainConfig {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ConfigError.invalidFile(path: path, reason: "cannot read config file")
        }
        var config = try parse(yaml: text, path: path, overrides: overrides)
        config.baseDirectory = (path as NSString).deletingLastPathComponent
        if config.baseDirectory.isEmpty { config.baseDirectory = "." }
        return config
    }

    public static func parse(yaml text: String, path: String = "<config>", overrides: [String] = []) throws -> TrainConfig {
        var tree: Any
        try YAMLLimits.check(text, path: path)
        do { tree = try Yams.load(yaml: text) ?? [String: Any]() }
        catch { throw ConfigError.invalidFile(path: path, reason: "YAML syntax error: \(error)") }
        guard var root = tree as? [String: Any] else { throw ConfigError.invalidFile(path: path, reason: "top level must be a mapping of sections") }
        for o in overrides {
            guard let eq = o.firstIndex(of: "="), eq != o.startIndex else {
                throw ConfigError.invalidValue(key: o, reason: "--set needs key.path=value")
            }
            let keys = o[..<eq].split(separator: ".").map(String.init)
            let raw = String(o[o.index(after: eq)...])
            // `key=null` (or `key=`) removes the key, so a default or an alternative applies.
            let parsed: Any?? = try? Yams.load(yaml: raw)
            let value: Any? = raw.isEmpty || raw == "null" || raw == "~" ? nil : (parsed.flatMap { $0 } ?? raw)
            root = try set(root, keys[...], value, full: String(o[..<eq]))
        }
        var source: LlamaConfig?
        if let section = root["model"] as? [String: Any], section["init_from"] != nil {
            let resolved = try resolveInitFrom(section, configPath: path)
            root["model"] = resolved.section
            source = resolved.source
        }
        tree = root
        let normalized = try Yams.dump(object: tree)
        do {
            var config = try YAMLDecoder().decode(TrainConfig.self, from: normalized)
            if var model = source {   // the source's values exactly (a YAML round trip may round a float)
                model.intraDocumentMasking = config.model.intraDocumentMasking
                model.initializerRange = config.model.initializerRange
                config.model = model
            }
            // SFT packs conversations into rows, a preference row holds its pair: attention and
            // positions must stop at their edges.
            if config.training.objective.usesChatData { config.model.intraDocumentMasking = true }
            try config.validate()
            return config
        } catch let e as ConfigError {
            throw ConfigError.invalidFile(path: path, reason: e.description)
        } catch let e as DecodingError {
            // Yams wraps errors thrown inside init(from:) (our unknown-key errors among them).
            if case let .dataCorrupted(ctx) = e, let inner = ctx.underlyingError {
                if let c = inner as? ConfigError { throw ConfigError.invalidFile(path: path, reason: c.description) }
                if let d = inner as? DecodingError { throw ConfigError.invalidFile(path: path, reason: describe(d)) }
            }
            throw ConfigError.invalidFile(path: path, reason: describe(e))
        }
    }

    /// The model section of a config with `init_from`: the source's own configuration, with the
    /// keys given beside it checked against it (any disagreement stops, naming the key) and the
    /// training-time keys applied.
    static func resolveInitFrom(_ section: [String: Any], configPath: String) throws -> (section: [String: Any], source: LlamaConfig) {
        guard let given = section["init_from"] as? String, !given.isEmpty else {
            throw ConfigError.invalidFile(path: configPath, reason: "invalid value for 'model.init_from': expected the path of a model")
        }
        let base = (configPath as NSString).deletingLastPathComponent
        let source = given.hasPrefix("/") || base.isEmpty ? given : (base as NSString).appendingPathComponent(given)
        let sourceConfig: LlamaConfig
        do { sourceConfig = try PretrainedModel.readConfig(source) }
        catch { throw ConfigError.invalidFile(path: configPath, reason: "model.init_from: \(error)") }
        // The source's keys as YAML values, so both sides compare as the same kinds of value.
        guard var merged = try Yams.load(yaml: try YAMLEncoder().encode(sourceConfig)) as? [String: Any] else {
            throw ConfigError.invalidFile(path: source, reason: "cannot represent the model config")
        }
        var effective = merged
        effective["head_dim"] = effective["head_dim"] ?? sourceConfig.headDim
        effective["no_rope_layers"] = effective["no_rope_layers"]
            ?? (0..<sourceConfig.numHiddenLayers).map { sourceConfig.usesRope(layer: $0) ? 1 : 0 }
        for (key, value) in section.sorted(by: { $0.key < $1.key }) where key != "init_from" {
            guard LlamaConfig.CodingKeys(rawValue: key) != nil else {
                throw ConfigError.invalidFile(path: configPath, reason: ConfigError.unknownKey(
                    key: "model." + key, known: LlamaConfig.CodingKeys.allCases.map(\.rawValue) + LlamaConfig.sectionKeys).description)
            }
            if trainingModelKeys.contains(key) { merged[key] = value; continue }
            guard let theirs = effective[key], sameValue(value, theirs) else {
                throw ConfigError.invalidFile(path: configPath, reason: "model.\(key) is \(value), but model.init_from (\(source)) has \(effective[key].map { "\($0)" } ?? "no such key"); leave it out or make it agree")
            }
        }
        merged["init_from"] = source
        return (merged, sourceConfig)
    }

    /// Whether two YAML values are equal (numbers by value, so 1 equals 1.0).
    static func sameValue(_ a: Any, _ b: Any) -> Bool {
        func number(_ x: Any) -> Double? { x is Bool ? nil : (x as? Int).map(Double.init) ?? (x as? Double) }
        if let x = number(a), let y = number(b) { return x == y || abs(x - y) <= 1e-12 * max(abs(x), abs(y)) }
        if let x = a as? Bool, let y = b as? Bool { return x == y }
        if let x = a as? String, let y = b as? String { return x == y }
        if let x = a as? [Any], let y = b as? [Any] { return x.count == y.count && zip(x, y).allSatisfy { sameValue($0, $1) } }
        return false
    }

    private static func set(_ node: [String: Any], _ keys: ArraySlice<String>, _ value: Any?, full: String) throws -> [String: Any] {
        var node = node
        guard let k = keys.first else { return node }
        if keys.count == 1 { node[k] = value; return node }
        let child = node[k] ?? [String: Any]()
        guard let map = child as? [String: Any] else { throw ConfigError.invalidValue(key: full, reason: "'\(k)' is not a section") }
        node[k] = try set(map, keys.dropFirst(), value, full: full)
        return node
    }

    static func describe(_ e: DecodingError) -> String {
        func path(_ c: [CodingKey]) -> String { c.map(\.stringValue).filter { !$0.isEmpty }.joined(separator: ".") }
        switch e {
        case let .keyNotFound(key, ctx): return ConfigError.missingKey(key: (path(ctx.codingPath) + "." + key.stringValue).trimmingCharacters(in: ["."])).description
        case let .typeMismatch(type, ctx): return "invalid value for '\(path(ctx.codingPath))': expected \(type)"
        case let .valueNotFound(type, ctx): return "missing value for '\(path(ctx.codingPath))': expected \(type)"
        case let .dataCorrupted(ctx): return "invalid value for '\(path(ctx.codingPath))': \(ctx.debugDescription)"
        @unknown default: return "\(e)"
        }
    }

    /// Reads only a model: the `model` section of a YAML config, or a Hugging Face config.json.
    public static func loadModel(path: String) throws -> LlamaConfig {
        if path.hasSuffix(".json") { return try HFConfig.read(path) }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError.invalidFile(path: path, reason: "cannot read file")
        }
        // A model taken from released weights: the source's config, as training would take it.
        if let text = String(data: data, encoding: .utf8), let tree = try? Yams.load(yaml: text) as? [String: Any],
           let section = tree["model"] as? [String: Any], section["init_from"] != nil {
            return try resolveInitFrom(section, configPath: path).source
        }
        let model: LlamaConfig
        do {
            struct OnlyModel: Decodable {
                let model: LlamaConfig
                enum CodingKeys: String, CodingKey { case model }
            }
            model = try YAMLDecoder().decode(OnlyModel.self, from: data).model
        } catch let e as ConfigError {
            throw ConfigError.invalidFile(path: path, reason: e.description)
        } catch let e as DecodingError {
            if case let .dataCorrupted(ctx) = e, let c = ctx.underlyingError as? ConfigError {
                throw ConfigError.invalidFile(path: path, reason: c.description)
            }
            throw ConfigError.invalidFile(path: path, reason: describe(e))
        }
        do { try model.validate() } catch { throw ConfigError.invalidFile(path: path, reason: "\(error)") }
        return model
    }

    /// A path of the config (no glob) against the config's directory.
    public func path(_ p: String) -> String { p.hasPrefix("/") ? p : (baseDirectory as NSString).appendingPathComponent(p) }

    /// Resolves the data paths (globs allowed) against the config's directory.
    public func resolve(_ patterns: [String]) throws -> [String] {
        var out: [String] = []
        for p in patterns {
            let full = p.hasPrefix("/") ? p : (baseDirectory as NSString).appendingPathComponent(p)
            let matches = globPaths(full)
            if matches.isEmpty { throw ConfigError.invalidValue(key: "data", reason: "no file matches '\(full)'") }
            out += matches
        }
        return out
    }
}
