import Foundation
import SmolData
import SmolFormats
import SmolModel

/// What a checkpoint holds besides tensors: enough to continue as if never stopped.
public struct TrainerState: Codable, Equatable, Sendable {
    public var step: Int
    public var tokensSeen: Int
    public var data: DataPosition
    public var seed: UInt64
    public var elapsedSeconds: Double
    /// The run's configuration as JSON, to detect a resume under a different config.
    public var config: String

    enum CodingKeys: String, CodingKey {
        case step, tokensSeen = "tokens_seen", data, seed, elapsedSeconds = "elapsed_seconds", config
    }
}

/// Checkpoints live in OUT/checkpoints/step_NNNNNNNN/ with model.safetensors (Hugging Face
/// tensor names), optimizer.safetensors (exp_avg.NAME, exp_avg_sq.NAME), config.json (HF) and
/// state.json. A checkpoint is written into a ".tmp-" directory, every file fsynced, then the
/// directory renamed into place, so a kill mid-write never leaves a half checkpoint under a step name.
public enum Checkpoint {
    public static func directory(root: String, step: Int) -> String {
        (root as NSString).appendingPathComponent(String(format: "step_%08d", step))
    }

    /// `tokenizer`: the run's tokenizer.json, copied in (with a tokenizer_config.json naming the
    /// end-of-text token) so the checkpoint loads as a Hugging Face-style directory.
    public static func save(root: String, model: LlamaModel, optimizer: AdamW, state: TrainerState, tokenizer: String? = nil) throws -> String {
        let fm = FileManager.default
        try fm.createDirectory(atPath: root, withIntermediateDirectories: true)
        let final = directory(root: root, step: state.step)
        let tmp = (root as NSString).appendingPathComponent(".tmp-" + (final as NSString).lastPathComponent)
        try? fm.removeItem(atPath: tmp)
        try fm.createDirectory(atPath: tmp, withIntermediateDirectories: false)
        try writeModel(model, to: (tmp as NSString).appendingPathComponent("model.safetensors"))
        let params = model.parameters
        let moments = params.slots.flatMap { s in
            [SafetensorsWriter.Tensor(name: "exp_avg." + s.name, shape: s.shape, data: optimizer.m.pointer + s.offset),
             SafetensorsWriter.Tensor(name: "exp_avg_sq." + s.name, shape: s.shape, data: optimizer.v.pointer + s.offset)]
        }
        try SafetensorsWriter.write(moments, metadata: ["step": String(optimizer.step)],
                                    to: (tmp as NSString).appendingPathComponent("optimizer.safetensors"))
        try writeJSON(HFConfig(model.config), to: (tmp as NSString).appendingPathComponent("config.json"))
        try writeJSON(state, to: (tmp as NSString).appendingPathComponent("state.json"))
        if let tokenizer {
            try fm.copyItem(atPath: tokenizer, toPath: (tmp as NSString).appendingPathComponent("tokenizer.json"))
            try writeJSON(["eos_token": "<|endoftext|>"], to: (tmp as NSString).appendingPathComponent("tokenizer_config.json"))
        }
        FileSink.syncDirectory(tmp)
        if fm.fileExists(atPath: final) { try fm.removeItem(atPath: final) }
        if rename(tmp, final) != 0 {
            throw ConfigError.invalidFile(path: final, reason: "cannot rename checkpoint into place: \(String(cString: strerror(errno)))")
        }
        FileSink.syncDirectory(root)
        return final
    }

    public static func writeModel(_ model: LlamaModel, to path: String) throws {
        let params = model.parameters
        let tensors = params.slots.map { SafetensorsWriter.Tensor(name: $0.name, shape: $0.shape, data: params.values.pointer + $0.offset) }
        try SafetensorsWriter.write(tensors, metadata: ["format": "pt"], to: path)
    }

    static func writeJSON<T: Encodable>(_ value: T, to path: String) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        let sink = try FileSink(path: path)
        try sink.write(try enc.encode(value))
        try sink.syncAndClose()
    }

    /// Step directories under `root`, oldest first (half-written ".tmp-" directories are ignored).
    public static func list(root: String) -> [(step: Int, path: String)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        return names.compactMap { name -> (Int, String)? in
            guard name.hasPrefix("step_"), let s = Int(name.dropFirst(5)) else { return nil }
            return (s, (root as NSString).appendingPathComponent(name))
        }.sorted { $0.0 < $1.0 }
    }

    /// Deletes all but the newest `keep` checkpoints, and any leftover temporary directory.
    public static func prune(root: String, keep: Int) {
        let all = list(root: root)
        for (_, path) in all.dropLast(keep) { try? FileManager.default.removeItem(atPath: path) }
        for name in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [] where name.hasPrefix(".tmp-") {
            try? FileManager.default.removeItem(atPath: (root as NSString).appendingPathComponent(name))
        }
    }

    /// Loads weights (and, given an optimizer, its moments) from a checkpoint directory.
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
            let f = try SafetensorsFile(path: (path as NSString).appendingPathComponent("optimizer.safetensors"))
            for s in model.parameters.slots {
                try f.read("exp_avg." + s.name, shape: s.shape, into: optimizer.m.pointer + s.offset)
                try f.read("exp_avg_sq." + s.name, shape: s.shape, into: optimizer.v.pointer + s.offset)
            }
            optimizer.restore(step: state.step)
        }
        return state
    }

    public static func loadWeights(from path: String, into model: LlamaModel) throws {
        let f = try SafetensorsFile(path: path)
        for s in model.parameters.slots {
            try f.read(s.name, shape: s.shape, into: model.parameters.values.pointer + s.offset)
        }
    }

    /// Reads the model config from a checkpoint directory (config.json) and builds the model.
    public static func loadModel(path: String) throws -> LlamaModel {
        let configPath = (path as NSString).appendingPathComponent("config.json")
        guard let data = FileManager.default.contents(atPath: configPath) else {
            throw ConfigError.invalidFile(path: configPath, reason: "missing config.json (is this a checkpoint directory?)")
        }
        let hf: HFConfig
        do { hf = try JSONDecoder().decode(HFConfig.self, from: data) }
        catch { throw ConfigError.invalidFile(path: configPath, reason: "cannot decode: \(error)") }
        let model = try LlamaModel(config: hf.llama)
        try loadWeights(from: (path as NSString).appendingPathComponent("model.safetensors"), into: model)
        return model
    }
}

/// config.json as Hugging Face transformers expects for LlamaForCausalLM.
public struct HFConfig: Codable {
    public var architectures = ["LlamaForCausalLM"]
    public var modelType = "llama"
    public var torchDtype = "float32"
    public var attentionBias = false
    public var mlpBias = false
    public var llama: LlamaConfig

    enum CodingKeys: String, CodingKey {
        case architectures, modelType = "model_type", torchDtype = "torch_dtype"
        case attentionBias = "attention_bias", mlpBias = "mlp_bias"
    }

    public init(_ llama: LlamaConfig) { self.llama = llama }

    public init(from decoder: Decoder) throws {
        // HF configs carry many keys we do not use; read only the ones the model needs.
        let c = try decoder.container(keyedBy: LlamaConfig.CodingKeys.self)
        func opt<T: Decodable>(_ k: LlamaConfig.CodingKeys) throws -> T? { try c.decodeIfPresent(T.self, forKey: k) }
        llama = LlamaConfig(vocabSize: try c.decode(Int.self, forKey: .vocabSize), hiddenSize: try c.decode(Int.self, forKey: .hiddenSize),
                            numHiddenLayers: try c.decode(Int.self, forKey: .numHiddenLayers),
                            numAttentionHeads: try c.decode(Int.self, forKey: .numAttentionHeads),
                            numKeyValueHeads: try opt(.numKeyValueHeads), intermediateSize: try c.decode(Int.self, forKey: .intermediateSize),
                            rmsNormEps: try opt(.rmsNormEps) ?? 1e-6, ropeTheta: try opt(.ropeTheta) ?? 10_000,
                            tieWordEmbeddings: try opt(.tieWordEmbeddings) ?? false,
                            maxPositionEmbeddings: try opt(.maxPositionEmbeddings) ?? 2048, headDim: try opt(.headDimOverride),
                            noRopeLayerInterval: try opt(.noRopeLayerInterval), noRopeLayers: try opt(.noRopeLayers),
                            intraDocumentMasking: try opt(.intraDocumentMasking) ?? false,
                            initializerRange: try opt(.initializerRange) ?? 0.02)
    }

    public func encode(to encoder: Encoder) throws {
        try llama.encode(to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(architectures, forKey: .architectures); try c.encode(modelType, forKey: .modelType)
        try c.encode(torchDtype, forKey: .torchDtype); try c.encode(attentionBias, forKey: .attentionBias)
        try c.encode(mlpBias, forKey: .mlpBias)
    }
}
