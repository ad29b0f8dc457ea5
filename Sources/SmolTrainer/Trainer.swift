import Foundation
import SmolData
import SmolFormats
import SmolModel
import SmolTensor
import SmolTokenizer
import SmolWeights

/// One optimizer step's figures (also one line of metrics.jsonl).
public struct StepMetrics: Codable, Sendable {
    public var kind = "train"
    public var step: Int
    public var tokens: Int
    public var loss: Double
    public var gradNorm: Double
    public var lr: Double
    public var tokensPerSecond: Double
    public var mfu: Double
    public var etaSeconds: Double
    public var elapsedSeconds: Double
    /// Preference objectives: the step's pairs as trl logs them (rewards/chosen, rewards/accuracies, …).
    public var preference: [String: Double]?
    /// Distillation: the loss's parts, "ce" (mean cross-entropy) and "kl" (mean KL from the teacher).
    public var distill: [String: Double]?

    enum CodingKeys: String, CodingKey {
        case kind, step, tokens, loss, gradNorm = "grad_norm", lr, tokensPerSecond = "tokens_per_s", mfu
        case etaSeconds = "eta_s", elapsedSeconds = "elapsed_s", preference, distill
    }
}

public struct EvalMetrics: Codable, Sendable {
    public var kind = "eval"
    public var step: Int
    public var tokens: Int
    public var valLoss: Double
    /// Tokens drawn so far from each data source, and how many epochs of it that is.
    public var sourceTokens: [String: Int] = [:]
    public var sourceEpochs: [String: Double] = [:]
    /// Evaluation-task metrics as "task/metric" (and "task/metric_stderr"), when tasks are configured.
    public var tasks: [String: Double]?
    /// Held-out loss per data source (with several sources).
    public var sourceValLoss: [String: Double]?
    /// Preference objectives: the held-out pairs' figures under trl's names (val_loss is their mean loss).
    public var preference: [String: Double]?
    enum CodingKeys: String, CodingKey {
        case kind, step, tokens, valLoss = "val_loss", sourceTokens = "source_tokens", sourceEpochs = "source_epochs", tasks
        case sourceValLoss = "source_val_loss", preference
    }
}

public enum TrainError: Error, CustomStringConvertible {
    case diverged(step: Int, loss: Double, gradNorm: Double, lastCheckpoint: String?)
    public var description: String {
        switch self {
        case let .diverged(step, loss, norm, last):
            return "step \(step): the loss is \(loss) and the gradient norm \(norm); training stopped before applying it. "
                + (last.map { "The last good checkpoint is \($0): continue from it with --resume and a lower optimizer.lr, " } ?? "No checkpoint was written yet: lower optimizer.lr, ")
                + "or set a stability policy (stability: {rule: olmo, policy: skip | rollback})"
        }
    }
}

/// What the trainer tells its caller as it goes.
public enum TrainEvent {
    case info(String)
    case step(StepMetrics)
    case eval(EvalMetrics)
    case checkpoint(step: Int, path: String)
    /// A loss spike and what was done: "logged", "skipped" (update not applied) or "rolled back".
    case spike(Spike, action: String)
    /// Restored the checkpoint of `toStep` after a spike at `fromStep`, skipping `skippedBatches` micro-batches of data.
    case rollback(fromStep: Int, toStep: Int, tokens: Int, skippedBatches: Int)
    /// A comparison with the baseline at an eval point (alert when it fell behind `patience` times in a row).
    case baseline(BaselineCheck)
    /// What the run's data says of itself, recorded once at the start (kind "chat_data": the SFT
    /// manifest's roles, system-prompt guard and packing, as JSON).
    case dataReport(kind: String, message: String)
}

public struct TrainSummary: Codable, Sendable {
    public var parameters: Int
    public var steps: Int
    public var tokens: Int
    public var firstLoss: Double?
    public var finalLoss: Double?
    public var finalValLoss: Double?
    public var seconds: Double
    public var tokensPerSecond: Double
    public var mfu: Double
    public var peakGflops: Double
    public var peakSource: String
    public var lastCheckpoint: String?
    public var resumedFrom: Int?
    /// Processes, data-parallel replicas, tensor-parallel ranks, ZeRO stage.
    public var worldSize = 1, dp = 1, tp = 1, zero = 0
    enum CodingKeys: String, CodingKey {
        case worldSize = "world_size", dp, tp, zero
        case parameters, steps, tokens, firstLoss = "first_loss", finalLoss = "final_loss", finalValLoss = "final_val_loss"
        case seconds, tokensPerSecond = "tokens_per_s", mfu, peakGflops = "peak_gflops", peakSource = "peak_source"
        case lastCheckpoint = "last_checkpoint", resumedFrom = "resumed_from"
    }
}

/// The training loop: data → forward/backward with gradient accumulation → clip → AdamW,
/// with periodic evaluation and atomic checkpoints, all reproducible from (config, seed).
public final class Trainer {
    public let config: TrainConfig
    public let outputDirectory: String
    public let model: LlamaModel
    public let optimizer: AdamW
    /// The one training step (gradients over the micro-batches, clip, AdamW).
    public let step: TrainStep
    /// Every process of the run (rank = dp index · tp + tp index).
    public let collectives: Collectives
    /// The ranks that hold the same tensor-parallel shards, one per data-parallel replica: the
    /// gradients are summed over it and it splits the data (the world while tp = 1).
    public let dataGroup: Collectives
    /// The ranks that share one model's shards (nil while tp = 1).
    public let tensorGroup: Collectives?
    /// Data-parallel replicas (the world size while tp = 1).
    public let dataParallel: Int
    /// The signal that stopped the run at a step boundary (after a checkpoint), 0 when it was not stopped.
    public private(set) var stoppedBySignal: Int32 = 0
    let resume: Bool
    var trainLoader: MixtureLoader
    var validation: TrainingSequences
    /// Each source's held-out windows (when the validation split comes from the sources).
    var sourceValidation: [(name: String, windows: TrainingSequences)]
    /// Each source's shards, and those of `data.validation`: the sets are cut from them again
    /// when a context stage changes seq_len.
    let sourceShards: [[TokenShard]]
    let validationShards: [TokenShard]?
    /// The context stage in force (0: the `training` section's shape).
    public private(set) var stageIndex = 0
    public var stage: ContextStage { config.training.stages(ropeTheta: config.model.ropeTheta)[stageIndex] }
    /// What the chat data's manifests say (SFT), recorded in the run store when the run starts.
    public private(set) var chatData: [(path: String, report: ChatDataReport)] = []
    var state: TrainerState
    let report: (TrainEvent) -> Void
    public private(set) var resumedFrom: Int?
    /// The distillation teacher's path (resolved), nil without `training.distill`.
    public private(set) var teacherSource: String?
    /// The fingerprint of `model.init_from`'s weights (a fresh run that starts from them).
    var initFingerprint: String?
    /// The run's tokenizer.json (data.tokenizer resolved against the config), nil for byte-level.
    public let tokenizerPath: String?
    /// The tokenizer, chat template and special tokens saved with every checkpoint: those of
    /// `model.init_from`, else of `data.tokenizer`; nil for a byte-level run.
    public let assets: ModelAssets?
    /// Runs the configured evaluation tasks on the live model (set by the caller, who owns the
    /// evaluation code); returns "task/metric" → value.
    public var taskEvaluator: ((LlamaModel) throws -> [String: Double])?
    /// The baseline's curve of `baseline.metric` by tokens: read from `baseline.curve`, or set by
    /// the caller from the run store for `baseline.run`.
    public var baselineCurve: [(tokens: Double, value: Double)]?
    /// Why the run stopped early (the baseline guard), nil when it ran to the end.
    public private(set) var stoppedEarly: String?
    private var audited = false

    public var checkpointRoot: String { (outputDirectory as NSString).appendingPathComponent("checkpoints") }
    public var metricsPath: String { (outputDirectory as NSString).appendingPathComponent("metrics.jsonl") }

    /// `collectives`: the world of dp × tp processes (one by default). Every rank builds its own
    /// Trainer; only rank 0 writes metrics, checkpoints and reports events, and holds the output
    /// directory's lock. A fresh run refuses a directory holding another run unless `force` (which
    /// deletes it); a resume refuses a changed config (beyond `RunDirectory.resumableKeys`) unless
    /// `allowConfigChange`.
    public init(config: TrainConfig, outputDirectory: String, resume: Bool, force: Bool = false, allowConfigChange: Bool = false,
                collectives: Collectives = SingleProcess(), report: @escaping (TrainEvent) -> Void = { _ in }) throws {
        self.config = config
        self.outputDirectory = outputDirectory
        self.collectives = collectives
        self.report = collectives.rank == 0 ? report : { _ in }
        dataParallel = try config.parallel.dataParallel(world: collectives.size)
        try config.training.validate(dataParallel: dataParallel)
        let tp = config.parallel.tp
        let groups = try ParallelGroups(world: collectives, tp: tp)
        tensorGroup = groups.tensor; dataGroup = groups.data
        let plan = TensorParallelPlan(size: tp, rank: tensorGroup?.rank ?? 0, vocabSize: config.model.vocabSize)
        model = try LlamaModel(config: plan.localConfig(config.model))
        model.tensorParallel = tensorGroup.map { TensorParallel(group: $0, vocabSize: config.model.vocabSize) }
        let precision = MatmulPrecision.resolve(config.training.precision)
        model.matmulPrecision = precision.precision
        if let notice = precision.notice { self.report(.info(notice)) }
        try model.checkTrainingMemory(batch: config.training.microBatch, seqLen: config.training.seqLen)
        let shard = config.parallel.zero >= 1 ? TrainStep.shard(count: model.parameters.count, ranks: dataGroup.size, rank: dataGroup.rank) : nil
        optimizer = AdamW(config: config.optimizer, parameters: model.parameters, shard: shard)
        step = TrainStep(model: model, optimizer: optimizer, collectives: dataGroup, zero: config.parallel.zero)

        tokenizerPath = try config.data.tokenizer.map { try config.resolve([$0])[0] }
        // The weights to start from; read before anything is written, so a bad source leaves no trace.
        var source: PretrainedModel?
        if let from = config.initFrom, !resume {
            source = try Trainer.loadSource(from, config: config.model)
        }
        let dataAssets = try tokenizerPath.map { path -> ModelAssets in
            do { return try PretrainedModel.loadTokenizerAssets(path) } catch { throw ConfigError.invalidValue(key: "data.tokenizer", reason: "\(error)") }
        }
        let dataTokenizer = dataAssets?.tokenizer
        if let from = config.initFrom {
            // On resume only the source's assets are read, not its weights.
            let sourceAssets = try source?.assets ?? PretrainedModel.loadAssets(from)
            assets = sourceAssets
            if let t = dataTokenizer, try DataManifest.tokenizerHash(of: t) != DataManifest.tokenizerHash(of: sourceAssets.tokenizer) {
                throw ConfigError.invalidValue(key: "data.tokenizer", reason: "\(tokenizerPath!) is not the tokenizer of model.init_from (\(from))")
            }
        } else {
            assets = dataAssets
        }
        let modelTokenizerHashes = try Trainer.tokenizerHashes(assets: assets, files: [tokenizerPath, config.initFrom.map {
            ($0 as NSString).appendingPathComponent("tokenizer.json") }].compactMap { $0 })
        var legacyHash: String?
        let T = config.training.seqLen
        _ = try config.data.mixtureStages()   // checked before anything is written
        let sourceConfigs = config.data.resolvedSources
        let usesChat = config.training.objective.usesChatData
        var sourceShards: [[TokenShard]] = []
        for src in sourceConfigs {
            let key = config.data.sources.isEmpty ? "data.train" : "data.sources[\(src.name)].shards"
            let paths = try config.resolve(src.shards)
            if paths.isEmpty { throw ConfigError.invalidValue(key: key, reason: "lists no shard") }
            let shards = try paths.map { try TokenShard(path: $0) }
            for s in shards where s.vocabSize > config.model.vocabSize {
                throw ConfigError.invalidValue(key: "model.vocab_size", reason: "\(config.model.vocabSize) is smaller than the vocabulary \(s.vocabSize) of shard \(s.path)")
            }
            try Trainer.checkObjective(config.training.objective, shards: shards, key: key)
            // Data tokenised with another tokenizer than the model's trains on the wrong ids.
            for path in paths {
                guard let (manifestPath, m) = DataManifest.find(forShard: path), !modelTokenizerHashes.contains(m.tokenizerHash) else { continue }
                // A manifest from before the fast fingerprint: compare the slow one it holds.
                if let t = assets?.tokenizer {
                    if legacyHash == nil { legacyHash = try DataManifest.legacyTokenizerHash(of: t) }
                    if m.tokenizerHash == legacyHash { continue }
                }
                let mine = config.initFrom.map { "model.init_from (\($0))" } ?? tokenizerPath.map { "data.tokenizer (\($0))" } ?? "the byte-level tokenizer"
                throw ConfigError.invalidValue(key: key, reason: "\(path) was tokenised with \(m.tokenizer) (hash \(m.tokenizerHash), \(manifestPath)), not with \(mine)")
            }
            if usesChat { chatData += try Trainer.checkChatData(paths: paths, template: assets?.chatTemplate, key: key) }
            sourceShards.append(shards)
        }
        if let d = config.training.distill {
            step.distillation = try Trainer.loadTeacher(d, config: config, studentAssets: assets)
            teacherSource = config.path(d.teacher)
        }
        var validationShards: [TokenShard]?
        if !config.data.validation.isEmpty {
            let shards = try config.resolve(config.data.validation).map { try TokenShard(path: $0) }
            try Trainer.checkObjective(config.training.objective, shards: shards, key: "data.validation")
            validationShards = shards
        }
        self.sourceShards = sourceShards; self.validationShards = validationShards
        var sets = try Trainer.makeSets(config: config, seqLen: T, sourceShards: sourceShards, validationShards: validationShards)
        validation = sets.validation; sourceValidation = sets.sourceValidation

        let configJSON = String(decoding: try JSONEncoder().encode(config), as: UTF8.self)
        state = TrainerState(step: 0, tokensSeen: 0, data: DataPosition(sources: sourceShards.count), seed: config.training.seed, elapsedSeconds: 0, config: configJSON)
        if collectives.rank == 0 {
            try RunDirectory.lock(outputDirectory)
            if resume {
                let removed = RunDirectory.removeLeftovers(checkpoints: (outputDirectory as NSString).appendingPathComponent("checkpoints"))
                if !removed.isEmpty { self.report(.info("removed \(removed.count) unfinished checkpoint(s) a killed save left: \(removed.joined(separator: ", "))")) }
            } else {
                try RunDirectory.prepareFresh(outputDirectory, force: force)
            }
        }

        var resumed: TrainerState?
        let root = (outputDirectory as NSString).appendingPathComponent("checkpoints")
        if resume {
            guard let latest = Checkpoint.list(root: root).last else {
                throw ConfigError.invalidFile(path: root, reason: "--resume found no checkpoint to resume from")
            }
            let s = try Checkpoint.load(path: latest.path, model: model, optimizer: optimizer)
            // This rank's place in the data: its own when the topology is the checkpoint's, else re-dealt.
            state.data = DataPosition.resharded(s.rankData ?? [s.data], toRanks: dataParallel, rank: dataGroup.rank)
            let saved = try JSONDecoder().decode(TrainConfig.self, from: Data(s.config.utf8))
            if saved.model != config.model {
                throw ConfigError.invalidFile(path: latest.path, reason: "checkpoint was trained with a different model config")
            }
            let changed = try RunDirectory.differences(saved, config).filter { d in
                !RunDirectory.resumableKeys.contains { d.key == $0 || d.key.hasPrefix($0 + ".") }
            }
            if !changed.isEmpty {
                let list = changed.map { "\($0.key): \($0.saved) -> \($0.now)" }.joined(separator: "; ")
                guard allowConfigChange else {
                    throw ConfigError.invalidFile(path: latest.path, reason: "the config differs from the checkpoint's in keys a resume keeps (\(list)); put them back, or pass --allow-config-change")
                }
                self.report(.info("warning: resuming with a changed config (\(list)); the run is no longer the one its checkpoints describe"))
            }
            resumed = s
            resumedFrom = s.step
        } else if let source {
            initFingerprint = source.model.parameters.fingerprint()
            model.parameters.load(from: source.model.parameters, plan: plan)
            self.report(.info("initialised from \(source.source) (\(source.format.rawValue), \(config.model.modelType))"))
        } else {
            model.parameters.initialize(seed: config.training.seed, std: Float(config.model.initializerRange), tensorParallel: plan,
                                        sharedSeedFault: config.fault.tpSharedSeed)
            model.parameters.duplicateTensorParallelShards(ranks: config.stability.sharedSeedTPRanks)
        }
        if let r = resumed { state.step = r.step; state.tokensSeen = r.tokensSeen; state.elapsedSeconds = r.elapsedSeconds }
        guard state.data.sources.count == sourceShards.count else {
            throw ConfigError.invalidValue(key: "data.sources", reason: "the checkpoint was written with \(state.data.sources.count) data source(s), the config has \(sourceShards.count)")
        }
        // The context stage of the next step: a resume past a switch cuts the data at that stage's
        // length, and a checkpoint written just before it moves its position into the new stage.
        let shapes = config.training.stages(ropeTheta: config.model.ropeTheta)
        for shape in shapes.dropFirst() { try model.checkTrainingMemory(batch: shape.microBatch, seqLen: shape.seqLen) }
        let k = config.training.stageIndex(ropeTheta: config.model.ropeTheta, atTokens: state.tokensSeen)
        var position = state.data
        if k > 0 {
            sets = try Trainer.makeSets(config: config, seqLen: shapes[k].seqLen, sourceShards: sourceShards, validationShards: validationShards)
            validation = sets.validation; sourceValidation = sets.sourceValidation
            let from = position.contextStage ?? 0
            if from < k { position = position.startingStage(k, seqLen: shapes[from].seqLen) }
            model.setRopeTheta(shapes[k].ropeTheta)
        }
        stageIndex = k
        if let objective = config.training.objective.preference {
            // The reference model is the initial one: its log-probs of every pair, before step 1.
            let pairs = (sets.train + sets.heldOut + [sets.validation]).compactMap { $0 as? PreferencePairs }
            let how = try ReferenceLogProbs.attach(to: pairs, model: model, microBatch: config.training.microBatch, runDirectory: outputDirectory,
                                                   resume: resume, collectives: dataGroup)
            self.report(.info(how))
            let over = sets.train.compactMap { $0 as? PreferencePairs }.reduce(0) { $0 + $1.overLength }
            if over > 0 { self.report(.info("\(over) preference pair(s) do not fit in seq_len = \(T) positions and are left out")) }
            step.preference = (objective, config.training.beta)
        }
        trainLoader = try Trainer.makeLoader(config: config, train: sets.train, stage: k, position: position, rank: dataGroup.rank, dataParallel: dataParallel)
        self.resume = resume
        if let b = config.baseline, let curve = b.curve {
            baselineCurve = try BaselineConfig.readCurve(path: try config.resolve([curve])[0], metric: b.metric)
        }
    }

    /// The training, held-out and validation sets of the run's shards cut at `seqLen`: pretraining
    /// windows, packed conversations (SFT) or preference pairs.
    struct DataSets {
        var train: [TrainingSequences], heldOut: [TrainingSequences]
        var validation: TrainingSequences
        var sourceValidation: [(name: String, windows: TrainingSequences)]
    }

    static func makeSets(config: TrainConfig, seqLen T: Int, sourceShards: [[TokenShard]], validationShards: [TokenShard]?) throws -> DataSets {
        let objective = config.training.objective
        let perSequence = config.training.lossNormalization == .sequence
        let fraction = validationShards == nil ? config.data.validationFraction : 0
        func all(_ shards: [TokenShard], part: @escaping (Int, Int) -> Bool = { _, _ in true }) -> TrainingSequences {
            switch objective {
            case .pretrain: return WindowDataset(shards: shards, seqLen: T)
            case .sft:
                let p = PackedConversations(shards: shards, seqLen: T, part: part)
                p.perSequence = perSequence
                return p
            case .dpo, .apoZero, .apoDown: return PreferencePairs(shards: shards, seqLen: T, part: part)
            }
        }
        let sources = config.data.resolvedSources
        var train: [TrainingSequences] = [], heldOut: [TrainingSequences] = []
        for (src, shards) in zip(sources, sourceShards) {
            let split: (TrainingSequences, TrainingSequences)
            if objective == .pretrain {
                split = validationShards == nil ? WindowDataset.split(shards: shards, seqLen: T, validationFraction: fraction)
                                                : (WindowDataset(shards: shards, seqLen: T), WindowDataset(shards: [], seqLen: T))
            } else {
                let isHeld = SmolData.heldOut(fraction: fraction)
                split = (all(shards) { !isHeld($0, $1) }, all(shards, part: isHeld))
            }
            if split.0.count == 0 {
                let key = config.data.sources.isEmpty ? "data.train" : "data.sources[\(src.name)].shards"
                throw ConfigError.invalidValue(key: key, reason: objective.preference != nil ? "the shards hold no preference pair that fits in seq_len = \(T) positions"
                                                             : objective == .sft ? "the shards hold no conversation of two or more tokens for training"
                                                                                 : "the shards hold fewer than seq_len + 1 = \(T + 1) tokens for training")
            }
            train.append(split.0); heldOut.append(split.1)
        }
        return DataSets(train: train, heldOut: heldOut,
                        validation: validationShards.map { all($0) } ?? ConcatenatedSequences(heldOut, seqLen: T),
                        sourceValidation: validationShards == nil && sources.count > 1 ? zip(sources, heldOut).map { ($0.name, $1) } : [])
    }

    /// The loader of context stage `k` from `position`: a later stage draws its windows in orders of
    /// its own, and its sequences count tokens from the stage's first step.
    static func makeLoader(config: TrainConfig, train: [TrainingSequences], stage k: Int, position: DataPosition, rank: Int, dataParallel dp: Int) throws -> MixtureLoader {
        let t = config.training, shapes = t.stages(ropeTheta: config.model.ropeTheta)
        let loader = MixtureLoader(sources: train, names: config.data.resolvedSources.map(\.name), stages: try config.data.mixtureStages(),
                                   microBatch: shapes[k].microBatch, seed: t.seed, rank: rank, worldSize: dp, position: position)
        if k > 0 {
            // Each rank draws batch_tokens / (seq_len · dp) sequences per step of a stage.
            var samples = 0
            for j in 0..<k {
                let steps = t.firstStep(ofStage: j + 1, ropeTheta: 1) - t.firstStep(ofStage: j, ropeTheta: 1)
                samples += steps * t.batchTokens / (shapes[j].seqLen * dp)
            }
            loader.orderSalt = "@context\(k)"
            loader.origin = (samples * dp, t.firstStep(ofStage: k, ropeTheta: 1) * t.batchTokens)
        }
        return loader
    }

    /// Moves to context stage `k` at a step boundary: the sets cut at its seq_len, a fresh loader
    /// position in them, the model's RoPE base, and activations of the new shape.
    func enterStage(_ k: Int) throws {
        let shapes = config.training.stages(ropeTheta: config.model.ropeTheta)
        let sets = try Trainer.makeSets(config: config, seqLen: shapes[k].seqLen, sourceShards: sourceShards, validationShards: validationShards)
        validation = sets.validation; sourceValidation = sets.sourceValidation
        let position = trainLoader.position.startingStage(k, seqLen: shapes[stageIndex].seqLen)
        trainLoader = try Trainer.makeLoader(config: config, train: sets.train, stage: k, position: position, rank: dataGroup.rank, dataParallel: dataParallel)
        model.setRopeTheta(shapes[k].ropeTheta)
        stageIndex = k
        model.prepare(batch: shapes[k].microBatch, seqLen: shapes[k].seqLen, training: true)
        report(.info(String(format: "context stage %d from step %d (%@ tokens): seq_len %d, rope_theta %g, micro_batch %d",
                            k, state.step + 1, formatCount(state.tokensSeen), shapes[k].seqLen, shapes[k].ropeTheta, shapes[k].microBatch)))
    }

    /// A checkpoint, written collectively: every rank's data position (and under ZeRO-1 every rank's
    /// shard of AdamW's moments) is gathered, rank 0 writes, and all ranks wait until it is in place.
    /// Returns the path on rank 0.
    func saveCheckpoint() throws -> String? {
        state.optimizerStep = optimizer.step
        state.data = trainLoader.position
        let positions = try dataGroup.allGather(Array(try JSONEncoder().encode(trainLoader.position)))
        state.rankData = try positions.map { try JSONDecoder().decode(DataPosition.self, from: Data($0)) }
        var moments = (m: optimizer.m, v: optimizer.v)
        if optimizer.shard != 0..<model.parameters.count {
            moments = (FloatBuffer(count: model.parameters.count), FloatBuffer(count: model.parameters.count))
            for (full, part) in [(moments.m, optimizer.m), (moments.v, optimizer.v)] {
                (full.pointer + optimizer.shard.lowerBound).update(from: part.pointer, count: optimizer.shard.count)
                try dataGroup.allGather(full.pointer, shards: step.shards)
            }
        }
        var path: String?
        if let tp = model.tensorParallel {
            // Whole tensors on disk: every group gathers its shards, world rank 0 writes.
            let modelConfig = wholeConfig
            let whole = collectives.rank == 0 ? ParameterStore(config: modelConfig) : nil
            let fullMoments = whole.map { (FloatBuffer(count: $0.count), FloatBuffer(count: $0.count)) }
            try tp.gather(model.parameters.values.pointer, store: model.parameters, into: whole.map { ($0, $0.values.pointer) })
            try tp.gather(moments.m.pointer, store: model.parameters, into: whole.map { ($0, fullMoments!.0.pointer) })
            try tp.gather(moments.v.pointer, store: model.parameters, into: whole.map { ($0, fullMoments!.1.pointer) })
            if let whole, let fullMoments {
                path = try Checkpoint.save(root: checkpointRoot, config: modelConfig, parameters: whole,
                                           moments: fullMoments, state: state, assets: assets)
                Checkpoint.prune(root: checkpointRoot, keep: config.training.keepCheckpoints)
            }
        } else if collectives.rank == 0 {
            path = try Checkpoint.save(root: checkpointRoot, model: model, moments: moments, state: state, assets: assets)
            Checkpoint.prune(root: checkpointRoot, keep: config.training.keepCheckpoints)
        }
        try collectives.barrier()
        return path
    }

    /// The whole model's configuration (a tensor-parallel rank's model holds its shard's), with the
    /// RoPE base of the context stage in force.
    var wholeConfig: LlamaConfig {
        var c = config.model
        c.ropeTheta = model.config.ropeTheta
        return c
    }

    /// The whole model, for sampling or export after training: `model` itself, or with tensor
    /// parallelism every rank's shards gathered on world rank 0 (nil on the others). Every rank calls it.
    public func wholeModel() throws -> LlamaModel? {
        guard let tp = model.tensorParallel else { return collectives.rank == 0 ? model : nil }
        let whole = collectives.rank == 0 ? try LlamaModel(config: wholeConfig) : nil
        try tp.gather(model.parameters.values.pointer, store: model.parameters, into: whole.map { ($0.parameters, $0.parameters.values.pointer) })
        return whole
    }

    /// RUN/provenance.json: the data's decontamination marks, the initial model and the teacher.
    /// A resume keeps the record of the run's start (and the audits recorded since).
    func writeProvenance() throws {
        let path = (outputDirectory as NSString).appendingPathComponent(Provenance.fileName)
        if resume && FileManager.default.fileExists(atPath: path) { return }
        let sources = zip(config.data.resolvedSources, sourceShards).map { (name: $0.name, shards: $1.map(\.path)) }
        let p = Provenance(run: (outputDirectory as NSString).standardizingPath, data: Provenance.dataSources(sources),
                           initFrom: config.initFrom.map { Provenance.model($0, fingerprint: initFingerprint) },
                           teacher: teacherSource.map { Provenance.model($0, fingerprint: step.distillation?.fingerprint) })
        try p.write(to: outputDirectory)
    }

    /// The teacher of `training.distill`, read before anything is written: it must exist, be a
    /// model this build reads, and share the student's tokenizer (by fingerprint) and vocabulary.
    static func loadTeacher(_ d: DistillConfig, config: TrainConfig, studentAssets: ModelAssets?) throws -> DistillationTeacher {
        let path = config.path(d.teacher)
        let teacher: PretrainedModel
        do { teacher = try PretrainedModel.load(path, decodeWeights: false) }
        catch { throw ConfigError.invalidValue(key: "training.distill.teacher", reason: "\(error)") }
        let student = try studentAssets?.tokenizer ?? BPETokenizer.bytes(specialTokens: ["<|endoftext|>"])
        let mine = try DataManifest.tokenizerHash(of: student), theirs = try DataManifest.tokenizerHash(of: teacher.tokenizer)
        if mine != theirs {
            let whose = config.initFrom.map { _ in "model.init_from's" } ?? (config.data.tokenizer != nil ? "data.tokenizer's" : "the byte-level tokenizer's")
            throw ConfigError.invalidValue(key: "training.distill.teacher", reason:
                "\(path) has another tokenizer (fingerprint \(theirs)) than the student's, \(whose) (\(mine)): distillation compares distributions over the same token ids")
        }
        if teacher.config.vocabSize != config.model.vocabSize {
            throw ConfigError.invalidValue(key: "training.distill.teacher", reason:
                "\(path) has vocab_size \(teacher.config.vocabSize), the student \(config.model.vocabSize); they must match")
        }
        return try DistillationTeacher(model: teacher.model, alpha: d.alpha, temperature: d.temperature, topK: d.topK,
                                       cacheDirectory: d.cache.map { config.path($0) })
    }

    /// The model of `model.init_from`, with float32 weights only. Its configuration is the run's
    /// (TrainConfig took it from the source), training-time keys aside.
    static func loadSource(_ path: String, config: LlamaConfig) throws -> PretrainedModel {
        let source: PretrainedModel
        do { source = try PretrainedModel.load(path, decodeWeights: false) }
        catch { throw ConfigError.invalidValue(key: "model.init_from", reason: "\(error)") }
        var theirs = source.config
        theirs.intraDocumentMasking = config.intraDocumentMasking; theirs.initializerRange = config.initializerRange
        guard theirs == config else {
            throw ConfigError.invalidValue(key: "model.init_from", reason: "\(path) changed since the config was read")
        }
        return source
    }

    /// Chat shards (with loss masks) are for SFT and preference objectives, and they need them;
    /// preference objectives need shards of pairs, which SFT refuses.
    static func checkObjective(_ objective: TrainingObjective, shards: [TokenShard], key: String) throws {
        if objective == .sft, let s = shards.first(where: { !$0.hasLossMask }) {
            throw ConfigError.invalidValue(key: key, reason: "\(s.path) has no loss mask; SFT trains on chat shards from `smol data prepare FILE.jsonl --format chat --tokenizer MODEL`")
        }
        for s in shards where objective.usesChatData {
            let pairs = DataManifest.find(forShard: s.path)?.1.chat?.pairs != nil
            if objective.preference != nil && (!s.hasLossMask || !pairs) {
                throw ConfigError.invalidValue(key: key, reason: "\(s.path) holds no preference pairs; training.objective: \(objective.rawValue) trains on shards from `smol data prepare FILE.jsonl --format preference --tokenizer MODEL`")
            }
            if objective == .sft && pairs {
                throw ConfigError.invalidValue(key: key, reason: "\(s.path) holds preference pairs (chosen and rejected); SFT on them would learn the rejected completions too. Set training.objective: dpo, apo_zero or apo_down")
            }
        }
        if objective == .pretrain, let s = shards.first(where: \.hasLossMask) {
            throw ConfigError.invalidValue(key: key, reason: "\(s.path) holds conversations with loss masks; set training.objective: sft (or dpo, apo_zero, apo_down for preference pairs) to train on them")
        }
    }

    /// The system-prompt guard again at train start: every chat shard's manifest must say it was
    /// rendered through the model's own chat template (a template changed since the prepare could
    /// drop what the guard checked), and what the prepare found is reported and recorded.
    static func checkChatData(paths: [String], template: String?, key: String) throws -> [(path: String, report: ChatDataReport)] {
        guard let template else {
            throw ConfigError.invalidValue(key: "model.init_from", reason: "chat data need the model's chat template, and the model has none")
        }
        let mine = ChatDataReport.templateHash(template)
        var out: [(String, ChatDataReport)] = []
        for path in paths {
            guard let (manifestPath, m) = DataManifest.find(forShard: path), let chat = m.chat else {
                throw ConfigError.invalidValue(key: key, reason: "\(path) has no chat manifest beside it, so the system-prompt guard cannot be checked; prepare it with `smol data prepare --format chat`")
            }
            if chat.templateHash != mine {
                throw ConfigError.invalidValue(key: key, reason: "\(path) was rendered through another chat template (hash \(chat.templateHash), \(manifestPath)) than the model's (hash \(mine)); prepare it again with this model")
            }
            if !out.contains(where: { $0.0 == manifestPath }) { out.append((manifestPath, chat)) }
        }
        return out
    }

    /// The manifest hashes that mean "made with the run's tokenizer": its canonical fingerprint, and
    /// the FNV-1a of the bytes of its tokenizer.json files (manifests written before the fingerprint).
    static func tokenizerHashes(assets: ModelAssets?, files: [String]) throws -> Set<String> {
        guard let a = assets else { return ["byte-level"] }
        var hashes: Set<String> = [try DataManifest.tokenizerHash(of: a.tokenizer)]
        // A byte-level run as model.init_from: its assets are the byte tokenizer, its data "byte-level".
        if hashes.contains(try DataManifest.tokenizerHash(of: BPETokenizer.bytes(specialTokens: ["<|endoftext|>"]))) { hashes.insert("byte-level") }
        for file in files { if let bytes = FileManager.default.contents(atPath: file) { hashes.insert(DataManifest.fnv1a64(bytes)) } }
        return hashes
    }

    /// Keeps only the metrics lines up to `step` (a resumed run rewrites what follows).
    static func trimMetrics(path: String, afterStep step: Int) throws {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return }
        let kept = text.split(separator: "\n").filter { line in
            guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let s = obj["step"] as? Int else { return false }
            return s <= step
        }
        let tmp = path + ".tmp"
        try (kept.joined(separator: "\n") + (kept.isEmpty ? "" : "\n")).write(toFile: tmp, atomically: false, encoding: .utf8)
        _ = rename(tmp, path)
    }

    /// Mean loss over `eval_batches` micro-batches of validation windows, spread over the set.
    public func evaluate() throws -> Double? { try evaluate(validation) }

    /// Held-out loss of each data source (the ablation question "what did this do to code?").
    public func evaluateSources() throws -> [String: Double] {
        var out: [String: Double] = [:]
        for (name, windows) in sourceValidation { if let v = try evaluate(windows) { out[name] = v } }
        return out
    }

    func evaluate(_ validation: TrainingSequences) throws -> Double? {
        if let objective = step.preference {
            let stats = try evaluatePreference(validation, objective: objective.objective, beta: objective.beta)
            lastEvalPreference = stats
            return stats.pairs > 0 ? stats.loss / stats.pairs : nil
        }
        let mb = stage.microBatch
        // Windows spread evenly over the held-out set, so with several sources every one is in it
        // (the first eval_batches × micro_batch windows would all come from the first source).
        let n = min(validation.count, config.training.evalBatches * mb)
        let windows = (0..<n).map { $0 * validation.count / max(n, 1) }
        if windows.isEmpty { return nil }
        var total = 0.0, weight = 0.0
        // Data parallel: rank r scores chunks r, r + W, …; the sums are added over ranks.
        for (k, i) in stride(from: 0, to: windows.count, by: mb).enumerated() where k % dataGroup.size == dataGroup.rank {
            let b = validation.batch(windows: Array(windows[i..<min(i + mb, windows.count)]), paddedTo: mb)
            let r = try model.forward(b, computeGradients: false)
            total += r.loss; weight += b.lossWeight
        }
        if dataGroup.size > 1 {
            total = try dataGroup.allReduce(total, op: .sum)
            weight = try dataGroup.allReduce(weight, op: .sum)
        }
        return weight > 0 ? total / weight : nil
    }

    /// The held-out pairs' preference figures of the last evaluation.
    var lastEvalPreference: PreferenceStats?

    /// Scores the held-out pairs (data parallel: rank r takes chunks r, r + W, …).
    func evaluatePreference(_ validation: TrainingSequences, objective: PreferenceObjective, beta: Double) throws -> PreferenceStats {
        let mb = stage.microBatch
        // eval_batches × micro_batch pairs, spread evenly over the held-out set.
        let n = min(validation.count, config.training.evalBatches * mb)
        let pairs = (0..<n).map { $0 * validation.count / max(n, 1) }
        var stats = PreferenceStats()
        for (k, i) in stride(from: 0, to: n, by: mb).enumerated() where k % dataGroup.size == dataGroup.rank {
            let b = validation.batch(windows: Array(pairs[i..<min(i + mb, n)]), paddedTo: mb)
            let losses = try model.tokenLosses(b)
            stats = stats + losses.withUnsafeBufferPointer { PreferenceBatch.score($0, batch: b, objective: objective, beta: beta) }
        }
        return try stats.allReduced(dataGroup)
    }

    /// The seed audit (SeedAudit) over every rank, once, before step 1; collective. `run()` calls it;
    /// a caller that wants its failure reported like a setup error calls it first, after every rank's
    /// setup succeeded (a rank that failed earlier must not leave the others waiting in it).
    public func auditSeeds() throws {
        guard !audited else { return }
        audited = true
        if collectives.size > 1 && config.parallel.audit {
            let n: Int
            do { n = try SeedAudit.run(parameters: model.parameters, world: collectives, tp: config.parallel.tp,
                                     vocabParallel: model.tensorParallel?.plan.vocabParallel ?? false) } catch let e as SeedAudit.Failure where config.fault.tpSharedSeed {
                throw SeedAudit.Failure(description: e.description + "; fault.tp_shared_seed is on: this is its drill")
            }
            report(.info("seed audit: \(n) tensors on \(collectives.size) ranks, shards distinct and replicas identical"))
        } else if config.fault.tpSharedSeed {
            report(.info("warning: fault.tp_shared_seed with parallel.audit off: every tensor-parallel rank holds the same shards"))
        }
    }

    public func run() throws -> TrainSummary {
        try auditSeeds()
        let t = config.training
        let total = t.totalSteps
        let flopsPerToken = config.model.modelFlopsPerToken(sequenceLength: t.seqLen)
        let peak: Double, peakSource: String
        if let p = t.peakGflops { peak = p; peakSource = "given in training.peak_gflops" }
        else if model.matmulPrecision == .bf16 {
            peak = PeakProbe.gemmGflops(kernel: .bf16)
            peakSource = "measured by a 2048³ bf16 GEMM probe, \(BF16GEMM.kernel?.rawValue ?? "")"
        } else { peak = PeakProbe.gemmGflops(); peakSource = "measured by a 2048³ sgemm probe" }
        report(.info(String(format: "model: %@ parameters; %.1f MFLOP per token; peak %.1f GFLOP/s (%@)",
                            formatCount(config.model.parameterCount), flopsPerToken / 1e6, peak, peakSource)))
        var accumulation = t.accumulationSteps(dataParallel: dataParallel, stage: stage)
        for (path, chat) in chatData {
            report(.info(String(format: "chat data %@: %d conversations, %.1f%% with a system message, %d loss tokens of %d; guard: %@; default system prompt injected in %d",
                                path, chat.conversations, chat.systemShare * 100, chat.lossTokens, chat.tokens,
                                chat.guardFailures.total == 0 ? "passed" : chat.guardFailures.reasons.sorted { $0.key < $1.key }.map { "\($0.value.count) \($0.key)" }.joined(separator: ", "),
                                chat.defaultSystemInjected.total)))
            let enc = JSONEncoder(); enc.outputFormatting = [.sortedKeys]
            report(.dataReport(kind: "chat_data", message: String(decoding: try enc.encode(ChatDataRecord(manifest: path, report: chat)), as: UTF8.self)))
        }
        if let packed = trainLoader.sources as? [PackedConversations] {
            let n = packed.reduce(0) { $0 + $1.conversations }, rows = packed.reduce(0) { $0 + $1.count }
            let eff = packed.reduce(0.0) { $0 + $1.efficiency * Double($1.count) } / Double(max(rows, 1))
            report(.info(String(format: "sft: %d conversations packed into %d rows of %d tokens (best-fit decreasing, %.1f%% filled), %d truncated to seq_len + 1, in %.1f ms",
                                n, rows, t.seqLen, eff * 100, packed.reduce(0) { $0 + $1.truncated }, packed.reduce(0) { $0 + $1.packingSeconds } * 1000)))
        }
        report(.info("data: \(trainLoader.sources.map(\.count).reduce(0, +)) training windows in \(trainLoader.sources.count) source(s), \(validation.count) validation windows of \(stage.seqLen) tokens; \(accumulation) micro-batch(es) of \(stage.microBatch) per step per rank"))
        if collectives.size > 1 {
            report(.info("parallel: world \(collectives.size) = dp \(dataParallel) × tp \(config.parallel.tp), ZeRO-\(config.parallel.zero)"))
        }
        if let r = resumedFrom { report(.info("resumed from step \(r)")) }
        if let teacher = step.distillation, let d = config.training.distill {
            report(.info("distilling from \(teacherSource ?? d.teacher) (weights \(teacher.fingerprint)): α = \(d.alpha), T = \(d.temperature), "
                         + (d.topK.map { "its top \($0) tokens per position" + (d.cache != nil ? ", cached" : "") } ?? "its whole distribution")))
        }

        // Nothing under the output directory changes before here, so a run that fails to start damages nothing.
        if collectives.rank == 0 { try writeProvenance() }
        if collectives.rank == 0 { try Trainer.trimMetrics(path: metricsPath, afterStep: resume ? state.step : 0) }
        let metrics = collectives.rank == 0 ? try MetricsLog(path: metricsPath) : nil
        let runStart = Date()
        let elapsedBefore = state.elapsedSeconds
        var firstLoss: Double?, lastLoss: Double?, lastVal: Double?
        var lastCheckpoint: String?
        var recent: [Double] = []          // recent step durations for tokens/s and ETA
        var warnedEpochs = Set<String>()
        var detector = SpikeDetector(config: config.stability)
        var rollbacks = 0, drilled = Set<Int>()
        if config.baseline?.run != nil && baselineCurve == nil && collectives.rank == 0 {
            throw ConfigError.invalidValue(key: "baseline.run", reason: "the baseline run's curve was not loaded (it comes from the run store)")
        }
        var guardian = config.baseline.flatMap { b in baselineCurve.map { BaselineGuard(config: b, curve: $0) } }
        model.prepare(batch: stage.microBatch, seqLen: stage.seqLen, training: true)

        while state.step < total {
            let dueStage = config.training.stageIndex(ropeTheta: config.model.ropeTheta, atTokens: state.tokensSeen)
            if dueStage > stageIndex {
                try enterStage(dueStage)
                accumulation = t.accumulationSteps(dataParallel: dataParallel, stage: stage)
            }
            let stepStart = Date()
            // The drill corrupts the data of a step once: after a rollback skips it, it is gone.
            let drill = config.stability.corruptBatchAt.contains(state.step + 1) && drilled.insert(state.step + 1).inserted
            var batches: [TokenBatch] = []
            for _ in 0..<accumulation {
                var batch = trainLoader.next()
                if drill {   // fire drill: a zeroed stretch of data
                    batch.tokens = [Int32](repeating: 0, count: batch.tokens.count)
                    batch.targets = [Int32](repeating: 0, count: batch.targets.count)
                }
                batches.append(batch)
            }
            let (loss, _) = try step.computeGradients(batches)
            let lr = config.schedule.learningRate(step: state.step, totalSteps: total, peak: config.optimizer.lr)
            // The spike check needs the norm before the update; the update then reuses it.
            let norm = try step.gradientNorm()
            let preNorm: Double? = norm
            var skipped = false
            if config.stability.rule != .off {
                if let spike = detector.check(step: state.step + 1, loss: loss, gradNorm: norm) {
                    switch config.stability.policy {
                    case .log:
                        try metrics?.appendEvent(spike: spike, action: "logged")
                        report(.spike(spike, action: "logged"))
                    case .skip:
                        // The update is not applied; the step still counts, and its eval and checkpoint still run.
                        try metrics?.appendEvent(spike: spike, action: "skipped")
                        report(.spike(spike, action: "skipped"))
                        skipped = true
                    case .rollback:
                        guard rollbacks < config.stability.maxRollbacks, let last = Checkpoint.list(root: checkpointRoot).last else {
                            throw ConfigError.invalidValue(key: "stability.max_rollbacks",
                                                           reason: "loss spike at step \(spike.step) (\(spike.signal) \(spike.loss)) after \(rollbacks) rollback(s), or no checkpoint to roll back to: stopping")
                        }
                        rollbacks += 1
                        let restored = try Checkpoint.load(path: last.path, model: model, optimizer: optimizer)
                        for _ in 0..<(config.stability.skipBatches) { _ = trainLoader.next() }
                        let skipped = (spike.step - restored.step) * accumulation + config.stability.skipBatches
                        state.step = restored.step; state.tokensSeen = restored.tokensSeen; state.data = trainLoader.position
                        try metrics?.trim(afterStep: restored.step)
                        try metrics?.appendEvent(spike: spike, action: "rolled back")
                        try metrics?.appendRollback(fromStep: spike.step, toStep: restored.step, skippedBatches: skipped)
                        report(.spike(spike, action: "rolled back"))
                        report(.rollback(fromStep: spike.step, toStep: restored.step, tokens: restored.tokensSeen, skippedBatches: skipped))
                        continue
                    }
                }
            }
            // A non-finite loss or gradient that no policy skipped or rolled back: stop before the
            // update, so no weights (and no checkpoint) ever hold NaN or infinity.
            if !skipped && (!loss.isFinite || !norm.isFinite) {
                throw TrainError.diverged(step: state.step + 1, loss: loss, gradNorm: norm,
                                          lastCheckpoint: Checkpoint.list(root: checkpointRoot).last?.path)
            }
            // A skipped step consumes its data and counts, but its update is not applied.
            let applied = skipped ? nil : try step.update(lr: lr, gradientNorm: preNorm)
            state.step += 1
            state.tokensSeen += t.batchTokens
            state.data = trainLoader.position
            if let norm = applied {
                let dt = Date().timeIntervalSince(stepStart)
                recent.append(dt); if recent.count > 20 { recent.removeFirst() }
                let avg = recent.reduce(0, +) / Double(recent.count)
                if firstLoss == nil { firstLoss = loss }
                lastLoss = loss
                let tps = Double(t.batchTokens) / avg
                var m = StepMetrics(step: state.step, tokens: state.tokensSeen, loss: loss, gradNorm: norm, lr: lr,
                                    tokensPerSecond: tps, mfu: tps * flopsPerToken / (peak * 1e9),
                                    etaSeconds: avg * Double(total - state.step),
                                    elapsedSeconds: elapsedBefore + Date().timeIntervalSince(runStart))
                if step.preference != nil { m.preference = step.preferenceStats.metrics }
                if step.distillation != nil { m.distill = ["ce": step.distillationStats.ce, "kl": step.distillationStats.kl] }
                try metrics?.append(m)
                report(.step(m))
            }

            if t.evalEvery > 0 && (state.step % t.evalEvery == 0 || state.step == total), let v = try evaluate() {
                lastVal = v
                var e = EvalMetrics(step: state.step, tokens: state.tokensSeen, valLoss: v)
                e.preference = lastEvalPreference?.metrics
                if !sourceValidation.isEmpty { e.sourceValLoss = try evaluateSources() }
                for a in trainLoader.accounting {
                    e.sourceTokens[a.name] = a.tokens
                    e.sourceEpochs[a.name] = (a.epochs * 1000).rounded() / 1000
                    if a.epochs > config.data.maxEpochs && !warnedEpochs.contains(a.name) {
                        warnedEpochs.insert(a.name)
                        report(.info(String(format: "warning: source '%@' repeated %.1f epochs, beyond data.max_epochs = %g", a.name, a.epochs, config.data.maxEpochs)))
                    }
                }
                let every = t.evalTasksEvery ?? t.evalEvery
                if let evaluate = taskEvaluator, state.step % every == 0 || state.step == total {
                    e.tasks = try evaluate(model)
                }
                try metrics?.append(e)
                report(.eval(e))
                if let b = config.baseline {
                    let value = b.metric == "val_loss" ? v : e.tasks?[b.metric]
                    if let value, let check = guardian?.check(step: state.step, tokens: state.tokensSeen, value: value) {
                        try metrics?.appendBaseline(check)
                        report(.baseline(check))
                        if check.alert && b.stop {
                            stoppedEarly = String(format: "behind the baseline on %@ for %d eval points (%.2f%% at step %d)",
                                                  b.metric, check.streak, check.relative * 100, check.step)
                        }
                    }
                }
            }
            // SIGTERM / SIGINT (Slurm's warning before preemption): every rank stops at this step boundary.
            let signal = collectives.size > 1 ? Int32(try collectives.allReduce(Double(StopRequest.signal), op: .max)) : StopRequest.signal
            let due = t.checkpointEvery > 0 && (state.step % t.checkpointEvery == 0 || state.step == total)
            if due || (signal != 0 && t.checkpointEvery > 0) {
                state.elapsedSeconds = elapsedBefore + Date().timeIntervalSince(runStart)
                if let path = try saveCheckpoint() {
                    lastCheckpoint = path
                    report(.checkpoint(step: state.step, path: path))
                }
            }
            if signal != 0 {
                stoppedBySignal = signal
                report(.info("stopped by signal \(signal) at step \(state.step)\(t.checkpointEvery > 0 ? " after a checkpoint" : "")"))
                break
            }
            // The guard's decision is rank 0's (it alone may score tasks): every rank follows it.
            if collectives.size > 1, try collectives.allReduce(stoppedEarly == nil ? 0 : 1, op: .max) > 0, stoppedEarly == nil {
                stoppedEarly = "rank 0's baseline guard"
            }
            if let why = stoppedEarly { report(.info("stopping early: \(why) (baseline.stop)")); break }
        }
        if let teacher = step.distillation, config.training.distill?.cache != nil {
            report(.info("teacher cache: \(teacher.cacheHits) micro-batch(es) read, \(teacher.cacheMisses) computed"))
        }
        let seconds = Date().timeIntervalSince(runStart)
        let stepsRun = state.step - (resumedFrom ?? 0)
        let tps = seconds > 0 ? Double(stepsRun * t.batchTokens) / seconds : 0   // the global batch: all ranks' tokens
        return TrainSummary(parameters: config.model.parameterCount, steps: state.step, tokens: state.tokensSeen,
                            firstLoss: firstLoss, finalLoss: lastLoss, finalValLoss: lastVal, seconds: seconds,
                            tokensPerSecond: tps, mfu: tps * flopsPerToken / (peak * 1e9), peakGflops: peak,
                            peakSource: peakSource, lastCheckpoint: lastCheckpoint ?? Checkpoint.list(root: checkpointRoot).last?.path,
                            resumedFrom: resumedFrom, worldSize: collectives.size, dp: dataParallel, tp: config.parallel.tp,
                            zero: config.parallel.zero)
    }
}

/// Appends one JSON object per line, flushed per line so a killed run keeps what it logged.
final class MetricsLog {
    let path: String
    var handle: FileHandle
    init(path: String) throws {
        self.path = path
        handle = try MetricsLog.open(path)
    }
    static func open(_ path: String) throws -> FileHandle {
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        guard let h = FileHandle(forWritingAtPath: path) else { throw ConfigError.invalidFile(path: path, reason: "cannot open metrics log") }
        h.seekToEndOfFile()
        return h
    }
    /// Drops the lines after `step` (a rollback rewrites them) and goes on appending to the new file.
    func trim(afterStep step: Int) throws {
        try? handle.close()
        try Trainer.trimMetrics(path: path, afterStep: step)
        handle = try MetricsLog.open(path)
    }
    struct EventRow: Encodable {
        var kind = "event"
        var event: String
        var step: Int
        var spike: Spike?
        var action: String?
        var toStep: Int?
        var skippedBatches: Int?
        var baseline: BaselineCheck?
        enum CodingKeys: String, CodingKey { case kind, event, step, spike, action, baseline, toStep = "to_step", skippedBatches = "skipped_batches" }
    }
    func appendEvent(spike: Spike, action: String) throws { try append(EventRow(event: "spike", step: spike.step, spike: spike, action: action)) }
    func appendRollback(fromStep: Int, toStep: Int, skippedBatches: Int) throws {
        try append(EventRow(event: "rollback", step: fromStep, toStep: toStep, skippedBatches: skippedBatches))
    }
    func appendBaseline(_ c: BaselineCheck) throws { try append(EventRow(event: c.alert ? "alert" : "baseline", step: c.step, baseline: c)) }
    func append<T: Encodable>(_ value: T) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        // A spike event may carry a NaN loss or an infinite threshold: written as strings, never an encoding failure.
        enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        var data = try enc.encode(value)
        data.append(0x0A)
        // FileHandle.write(_:) traps on a full disk; this one throws, and the run stops naming the file.
        // A partly written line is cut off again, so the log holds whole lines only.
        let end = (try? handle.offset()) ?? 0
        do { try handle.write(contentsOf: data) }
        catch {
            try? handle.truncate(atOffset: end)
            throw ConfigError.invalidFile(path: path, reason: "cannot append to the metrics log: \(error)")
        }
    }
    deinit { try? handle.close() }
}

public func formatCount(_ n: Int) -> String {
    let d = Double(n)
    if d >= 1e9 { return String(format: "%.2fB", d / 1e9) }
    if d >= 1e6 { return String(format: "%.2fM", d / 1e6) }
    if d >= 1e3 { return String(format: "%.1fK", d / 1e3) }
    return "\(n)"
}

/// The chat manifest a run trained on, as the run store records it.
struct ChatDataRecord: Encodable {
    let manifest: String
    let report: ChatDataReport
}
