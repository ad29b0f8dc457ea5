import Foundation
import SmolFormats
import SmolModel
import SmolTokenizer

public enum HubError: Error, CustomStringConvertible {
    case invalid(path: String, reason: String)
    public var description: String {
        switch self { case let .invalid(path, reason): return "\(path): \(reason)" }
    }
}

/// A model with what it needs to talk: its tokenizer, chat template and special tokens. Loaded
/// from a GGUF file, a Hugging Face directory (config.json, model.safetensors or shards,
/// tokenizer.json, tokenizer_config.json), or one of our checkpoints (or a run directory, whose
/// newest checkpoint is taken).
public final class PretrainedModel {
    public enum Format: String, Sendable { case gguf, huggingface, checkpoint }

    public let source: String
    public let format: Format
    public let model: LlamaModel
    public let tokenizer: BPETokenizer
    public let chatTemplate: String?
    public let bosToken: String?, eosToken: String?
    /// Ids that end generation (EOS and, for chat models, the end-of-turn token).
    public let stopIds: Set<Int32>

    init(source: String, format: Format, model: LlamaModel, tokenizer: BPETokenizer, chatTemplate: String?,
         bosToken: String?, eosToken: String?, stopIds: Set<Int32>) {
        self.source = source; self.format = format; self.model = model; self.tokenizer = tokenizer
        self.chatTemplate = chatTemplate; self.bosToken = bosToken; self.eosToken = eosToken; self.stopIds = stopIds
    }

    public var config: LlamaConfig { model.config }

    /// The tokenizer, chat template and special tokens, as checkpoints and exports write them.
    public var assets: ModelAssets {
        ModelAssets(tokenizer: tokenizer, chatTemplate: chatTemplate, bosToken: bosToken, eosToken: eosToken, stopIds: stopIds)
    }

    /// Loads a model. `decodeWeights`: keep a GGUF's quantised blocks for fast single-token
    /// decoding (inference); training needs only the float32 weights.
    public static func load(_ path: String, decodeWeights: Bool = true) throws -> PretrainedModel {
        switch try locate(path) {
        case .gguf: return try loadGGUF(path, decodeWeights: decodeWeights)
        case .directory(let dir): return try loadDirectory(dir)
        }
    }

    /// Only the model's configuration (reads a GGUF's metadata or a config.json, no weights).
    public static func readConfig(_ path: String) throws -> LlamaConfig {
        switch try locate(path) {
        case .gguf: return try GGUFModel.config(try GGUFFile(path: path))
        case .directory(let dir): return try HFConfig.read(join(dir, "config.json"))
        }
    }

    /// Only the tokenizer: a tokenizer.json, or a model's (GGUF, HF directory, checkpoint or run).
    public static func loadTokenizer(_ path: String) throws -> BPETokenizer {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue, case .directory(let dir) = try locate(path) {
            let file = join(dir, "tokenizer.json")
            guard FileManager.default.fileExists(atPath: file) else {
                throw HubError.invalid(path: path, reason: "no tokenizer.json (a byte-level run: leave the tokenizer out)")
            }
            return try BPETokenizer(path: file)
        }
        return path.hasSuffix(".gguf") ? try BPETokenizer(gguf: GGUFFile(path: path)) : try BPETokenizer(path: path)
    }

    enum Location { case gguf, directory(String) }

    /// A file is a GGUF; a directory is an HF directory or checkpoint, or a run whose newest checkpoint is taken.
    static func locate(_ path: String) throws -> Location {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw HubError.invalid(path: path, reason: "no such file or directory")
        }
        if !isDir.boolValue { return .gguf }
        var dir = path
        let fm = FileManager.default
        if !fm.fileExists(atPath: join(dir, "config.json")),
           let newest = CheckpointLayout.list(root: CheckpointLayout.root(run: dir)).last {
            dir = newest.path
        }
        guard fm.fileExists(atPath: join(dir, "config.json")) else {
            throw HubError.invalid(path: path, reason: "not a model: no config.json (expected a GGUF file, a Hugging Face directory, a checkpoint or a run directory)")
        }
        return .directory(dir)
    }

    /// A model being trained, with the run's assets (the byte-level tokenizer when it has none),
    /// so evaluation and sampling can run on it between steps.
    public static func live(model: LlamaModel, assets: ModelAssets?, source: String) throws -> PretrainedModel {
        let a = try assets ?? ModelAssets(tokenizer: BPETokenizer.bytes(specialTokens: ["<|endoftext|>"]), chatTemplate: nil,
                                          bosToken: nil, eosToken: "<|endoftext|>")
        return PretrainedModel(source: source, format: .checkpoint, model: model, tokenizer: a.tokenizer, chatTemplate: a.chatTemplate,
                               bosToken: a.bosToken, eosToken: a.eosToken, stopIds: a.stopIds)
    }

    static func join(_ a: String, _ b: String) -> String { (a as NSString).appendingPathComponent(b) }

    static func loadGGUF(_ path: String, decodeWeights: Bool) throws -> PretrainedModel {
        let (model, g) = try GGUFModel.load(path, decodeWeights: decodeWeights)
        let a = try ggufAssets(g)
        guard a.tokenizer.vocabSize <= model.config.vocabSize else {
            throw HubError.invalid(path: path, reason: "tokenizer has \(a.tokenizer.vocabSize) tokens, the model only \(model.config.vocabSize)")
        }
        return PretrainedModel(source: path, format: .gguf, model: model, tokenizer: a.tokenizer, chatTemplate: a.chatTemplate,
                               bosToken: a.bosToken, eosToken: a.eosToken, stopIds: a.stopIds)
    }

    static func ggufAssets(_ g: GGUFFile) throws -> ModelAssets {
        let tokenizer = try BPETokenizer(gguf: g)
        func token(_ key: String) -> String? {
            guard let id = g.metadata[key]?.int, id >= 0, id < tokenizer.idToToken.count else { return nil }
            return tokenizer.idToToken[id]
        }
        let eos = token("tokenizer.ggml.eos_token_id")
        return ModelAssets(tokenizer: tokenizer, chatTemplate: g.metadata["tokenizer.chat_template"]?.string,
                           bosToken: token("tokenizer.ggml.bos_token_id"), eosToken: eos,
                           stopIds: ModelAssets.stopIds(tokenizer, eos: eos, extra: []))
    }

    /// Only the tokenizer, chat template and special tokens of a model (no weights are read).
    public static func loadAssets(_ path: String) throws -> ModelAssets {
        switch try locate(path) {
        case .gguf: return try ggufAssets(try GGUFFile(path: path))
        case .directory(let dir): return try directoryAssets(dir).assets
        }
    }

    /// What a tokenizer option names: a tokenizer.json (the tokenizer alone); a directory holding one
    /// beside tokenizer_config.json, with no model (its chat template and special tokens: what SFT
    /// from scratch needs); or any model `loadAssets` reads (GGUF, HF directory, checkpoint, run).
    public static func loadTokenizerAssets(_ path: String) throws -> ModelAssets {
        var isDir: ObjCBool = false
        let fm = FileManager.default
        let exists = fm.fileExists(atPath: path, isDirectory: &isDir)
        if exists && isDir.boolValue && !fm.fileExists(atPath: join(path, "config.json")) && fm.fileExists(atPath: join(path, "tokenizer.json")) {
            return try directoryAssets(path).assets
        }
        if exists && !isDir.boolValue && !path.hasSuffix(".gguf") { return ModelAssets(tokenizer: try BPETokenizer(path: path)) }
        return try loadAssets(path)
    }

    static func loadDirectory(_ dir: String) throws -> PretrainedModel {
        let config = try HFConfig.read(join(dir, "config.json"))
        let model = try LlamaModel(config: config)
        try SafetensorsWeights.load(directory: dir, into: model)
        let (a, isCheckpoint) = try directoryAssets(dir)
        return PretrainedModel(source: dir, format: isCheckpoint ? .checkpoint : .huggingface, model: model, tokenizer: a.tokenizer,
                               chatTemplate: a.chatTemplate, bosToken: a.bosToken, eosToken: a.eosToken, stopIds: a.stopIds)
    }

    /// tokenizer.json, tokenizer_config.json (template, special tokens) and generation_config.json's
    /// EOS ids of a directory; a checkpoint without tokenizer.json is byte-level.
    static func directoryAssets(_ dir: String) throws -> (assets: ModelAssets, isCheckpoint: Bool) {
        let tokenizerPath = join(dir, "tokenizer.json")
        let isCheckpoint = !FileManager.default.fileExists(atPath: tokenizerPath)
        let tokenizer = isCheckpoint ? try BPETokenizer.bytes(specialTokens: ["<|endoftext|>"]) : try BPETokenizer(path: tokenizerPath)
        var template: String?, bos: String?, eos: String? = isCheckpoint ? "<|endoftext|>" : nil
        let tcPath = join(dir, "tokenizer_config.json")
        if let data = FileManager.default.contents(atPath: tcPath) {
            guard let tc = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
                throw HubError.invalid(path: tcPath, reason: "not a JSON object")
            }
            if let t = tc["chat_template"] as? String { template = t }
            else if let list = tc["chat_template"] as? [[String: Any]] {   // named templates: take "default"
                template = (list.first { $0["name"] as? String == "default" } ?? list.first)?["template"] as? String
            }
            func tokenString(_ v: Any?) -> String? { (v as? String) ?? ((v as? [String: Any])?["content"] as? String) }
            bos = tokenString(tc["bos_token"]); eos = tokenString(tc["eos_token"]) ?? eos
        }
        if template == nil, let t = try? String(contentsOfFile: join(dir, "chat_template.jinja"), encoding: .utf8) { template = t }
        var extra: [Int32] = []
        if let gen = FileManager.default.contents(atPath: join(dir, "generation_config.json")),
           let g = (try? JSONSerialization.jsonObject(with: gen)) as? [String: Any] {
            if let id = g["eos_token_id"] as? Int { extra.append(Int32(id)) }
            if let ids = g["eos_token_id"] as? [Int] { extra += ids.map(Int32.init) }
        }
        return (ModelAssets(tokenizer: tokenizer, chatTemplate: template, bosToken: bos, eosToken: eos,
                            stopIds: ModelAssets.stopIds(tokenizer, eos: eos, extra: extra)), isCheckpoint)
    }
}
