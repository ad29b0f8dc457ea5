import Foundation
import SmolData
import SmolFormats
import SmolModel
import SmolTensor
import SmolWeights

/// What a checkpoint holds besides tensors: enough to continue as if never stopped.
public struct TrainerState: Codable, Equatable, Sendable {
    public var step: Int
    public var tokensSeen: Int
    public var data: DataPosition
    public var seed: UInt64
    public var elapsedSeconds: Double
    /// The run's configuration as JSON, to detect a resume under a different config.
    public var config: String
    /// AdamW's own step count (bias correction): behind `step` by the steps a spike skipped.
    /// Absent in checkpoints written before it was recorded, where it equals `step`.
    public var optimizerStep: Int?
    /// Every data-parallel rank's loader position, in rank order (`data` is rank 0's).
    public var rankData: [DataPosition]?

    enum CodingKeys: String, CodingKey {
        case step, tokensSeen = "tokens_seen", data, seed, elapsedSeconds = "elapsed_seconds", config, optimizerStep = "optimizer_step"
        case rankData = "rank_data"
    }
}

/// Checkpoints live in OUT/checkpoints/step_NNNNNNNN/: a Hugging Face directory written by
/// `HFDirectoryWriter` (config.json, generation_config.json, model.safetensors and, when the run
/// has a tokenizer, tokenizer.json and tokenizer_config.json), plus optimizer.safetensors
/// (exp_avg.NAME, exp_avg_sq.NAME) and state.json. A checkpoint is written into a ".tmp-" directory, every file fsynced, then the
/// directory renamed into place, so a kill mid-write never leaves a half checkpoint under a step name.
public enum Checkpoint {
    public static func directory(root: String, step: Int) -> String { CheckpointLayout.directory(root: root, step: step) }

    /// `assets`: the run's tokenizer, chat template and special tokens (nil for the byte-level
    /// tokenizer), so the checkpoint loads as a Hugging Face directory anywhere a model is taken.
    /// `moments`: AdamW's m and v over the whole flat buffer (gathered from every rank under ZeRO-1).
    public static func save(root: String, model: LlamaModel, moments: (m: FloatBuffer, v: FloatBuffer), state: TrainerState,
                            assets: ModelAssets?) throws -> String {
        try save(root: root, config: model.config, parameters: model.parameters, moments: moments, state: state, assets: assets)
    }

    /// The same from the whole model's configuration and parameters, `moments` in their layout
    /// (a tensor-parallel run gathers every rank's shards into them first).
    public static func save(root: String, config: LlamaConfig, parameters params: ParameterStore, moments: (m: FloatBuffer, v: FloatBuffer),
                            state: TrainerState, assets: ModelAssets?) throws -> String {
        let fm = FileManager.default
        try fm.createDirectory(atPath: root, withIntermediateDirectories: true)
        let final = directory(root: root, step: state.step)
        let tmp = (root as NSString).appendingPathComponent(".tmp-" + (final as NSString).lastPathComponent)
        try? fm.removeItem(atPath: tmp)
        try fm.createDirectory(atPath: tmp, withIntermediateDirectories: false)
        try HFDirectoryWriter.write(config: config, parameters: params, assets: assets, into: tmp)
        let tensors = params.slots.flatMap { s in
            [SafetensorsWriter.Tensor(name: "exp_avg." + s.name, shape: s.shape, data: moments.m.pointer + s.offset),
             SafetensorsWriter.Tensor(name: "exp_avg_sq." + s.name, shape: s.shape, data: moments.v.pointer + s.offset)]
        }
        try SafetensorsWriter.write(tensors, metadata: ["step": String(state.optimizerStep ?? state.step)],
                                    to: (tmp as NSString).appendingPathComponent("optimizer.safetensors"))
        try writeJSON(state, to: (tmp as NSString).appendingPathComponent("state.json"))
        FileSink.syncDirectory(tmp)
        if fm.fileExists(atPath: final) { try fm.removeItem(atPath: final) }
        if rename(tmp, final) != 0 {
            throw ConfigError.invalidFile(path: final, reason: "cannot rename checkpoint into place: \(String(cString: strerror(errno)))")
        }
        FileSink.syncDirectory(root)
        return final
    }

    static func writeJSON<T: Encodable>(_ value: T, to path: String) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try FileSink.writeDurably(try enc.encode(value), to: path)
    }

    /// Step directories under `root`, oldest first (half-written ".tmp-" directories are ignored).
    public static func list(root: String) -> [(step: Int, path: String)] { CheckpointLayout.list(root: root) }

    /// Deletes all but the newest `keep` checkpoints, and any leftover temporary directory.
    public static func prune(root: String, keep: Int) {
        let all = list(root: root)
        for (_, path) in all.dropLast(keep) { try? FileManager.default.removeItem(atPath: path) }
        for name in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [] where name.hasPrefix(".tmp-") {
            try? FileManager.default.removeItem(atPath: (root as NSString).appendingPathComponent(name))
        }
    }

    /// Loads weights (and, given an optimizer, its moments) from a checkpoint directory. The files
    /// hold whole tensors; a tensor-parallel model (`model.tensorParallel`) keeps its shard of each.
    public static func load(path: String, model: LlamaModel, optimizer: AdamW?) throws -> TrainerState {
        try loadWeights(from: (path as NSString).appendingPathComponent("model.safetensors"), into: model)
        let statePath = (path as NSString).appendingPathComponent("state.json")
        guard let data = FileManager.default.contents(atPath: statePath) else {
            throw ConfigError.invalidFile(path: statePath, reason: "missing checkpoint state")
        }
        let state: TrainerState
        do { state = try JSONDecoder().decode(TrainerState.self, from: data) }
        catch { throw ConfigError.invalidFile(path: statePath, reason: "cannot decode checkpoint state: \(error)") }
        if let optimizer {
            // Full tensors on disk; a ZeRO-1 optimizer keeps its shard of them.
            let f = try SafetensorsFile(path: (path as NSString).appendingPathComponent("optimizer.safetensors"))
            let whole = optimizer.shard == 0..<model.parameters.count
            let m = whole ? optimizer.m : FloatBuffer(count: model.parameters.count)
            let v = whole ? optimizer.v : FloatBuffer(count: model.parameters.count)
            for s in model.parameters.slots {
                try readShard(f, "exp_avg." + s.name, slot: s, model: model, into: m.pointer + s.offset)
                try readShard(f, "exp_avg_sq." + s.name, slot: s, model: model, into: v.pointer + s.offset)
            }
            if !whole {
                optimizer.m.pointer.update(from: m.pointer + optimizer.shard.lowerBound, count: optimizer.shard.count)
                optimizer.v.pointer.update(from: v.pointer + optimizer.shard.lowerBound, count: optimizer.shard.count)
            }
            optimizer.restore(step: state.optimizerStep ?? state.step)
        }
        return state
    }

    /// Tensor `name` of `f` into `out`: whole, or this tensor-parallel rank's part of it.
    static func readShard(_ f: SafetensorsFile, _ name: String, slot s: TensorSlot, model: LlamaModel, into out: UnsafeMutablePointer<Float>) throws {
        guard let plan = model.tensorParallel?.plan, plan.size > 1, plan.split(of: s.name) != .replicated else {
            return try f.read(name, shape: s.shape, into: out)
        }
        let shape = plan.fullShape(of: s.name, local: s.shape)
        let full = FloatBuffer(count: shape.reduce(1, *))
        try f.read(name, shape: shape, into: full.pointer)
        TensorParallelPlan.extract(plan.split(of: s.name), full: full.pointer, fullShape: shape, size: plan.size, rank: plan.rank, into: out)
    }

    /// Reads the weights, refusing a file that holds NaN or infinity (a diverged run's, never ours).
    public static func loadWeights(from path: String, into model: LlamaModel) throws {
        let f = try SafetensorsFile(path: path)
        for s in model.parameters.slots {
            let p = model.parameters.values.pointer + s.offset
            try readShard(f, s.name, slot: s, model: model, into: p)
            if let bad = (0..<s.count).first(where: { !p[$0].isFinite }) {
                throw ConfigError.invalidFile(path: path, reason: "tensor \(s.name) holds a non-finite value (\(p[bad]) at element \(bad)); refusing to resume from it")
            }
        }
    }
}
