import Foundation
import SmolFormats
import SmolModel
import SmolTokenizer
import SmolTrainer

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

    public static func load(_ path: String) throws -> PretrainedModel {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw HubError.invalid(path: path, reason: "no such file or directory")
        }
        if !isDir.boolValue { return try loadGGUF(path) }
        var dir = path
        let fm = FileManager.default
        if !fm.fileExists(atPath: join(dir, "config.json")),
           let newest = Checkpoint.list(root: join(dir, "checkpoints")).last {
            dir = newest.path
        }
        guard fm.fileExists(atPath: join(dir, "config.json")) else {
            throw HubError.invalid(path: path, reason: "not a model: no config.json (expected a GGUF file, a Hugging Face directory or a checkpoint)")
        }
        return try loadDirectory(dir)
    }

    /// A model being trained, with the tokenizer its data was made with (the byte-level one when
    /// there is none), so evaluation can run on it between steps.
    public static func live(model: LlamaModel, tokenizerPath: String?, source: String) throws -> PretrainedModel {
        let tokenizer = try tokenizerPath.map { try BPETokenizer(path: $0) } ?? BPETokenizer.bytes(specialTokens: ["<|endoftext|>"])
        let eos = tokenizer.id(of: "<|endoftext|>") != nil ? "<|endoftext|>" : nil
        return PretrainedModel(source: source, format: .checkpoint, model: model, tokenizer: tokenizer, chatTemplate: nil,
                               bosToken: nil, eosToken: eos, stopIds: stopIds(tokenizer, eos: eos, extra: []))
    }

    static func join(_ a: String, _ b: String) -> String { (a as NSString).appendingPathComponent(b) }

    static func loadGGUF(_ path: String) throws -> PretrainedModel {
        let (model, g) = try GGUFModel.load(path)
        let tokenizer = try BPETokenizer(gguf: g)
        guard tokenizer.vocabSize <= model.config.vocabSize else {
            throw HubError.invalid(path: path, reason: "tokenizer has \(tokenizer.vocabSize) tokens, the model only \(model.config.vocabSize)")
        }
        func token(_ key: String) -> String? {
            guard let id = g.metadata[key]?.int, id >= 0, id < tokenizer.idToToken.count else { return nil }
            return tokenizer.idToToken[id]
        }
        let eos = token("tokenizer.ggml.eos_token_id")
        return PretrainedModel(source: path, format: .gguf, model: model, tokenizer: tokenizer,
                               chatTemplate: g.metadata["tokenizer.chat_template"]?.string,
                               bosToken: token("tokenizer.ggml.bos_token_id"), eosToken: eos,
                               stopIds: stopIds(tokenizer, eos: eos, extra: []))
    }

    /// EOS plus the end-of-turn markers of common chat formats when the vocabulary has them.
    static func stopIds(_ t: BPETokenizer, eos: String?, extra: [Int32]) -> Set<Int32> {
        var ids = Set(extra)
        for name in [eos, "<|im_end|>", "<|eot_id|>", "<|endoftext|>"].compactMap({ $0 }) {
            if let id = t.id(of: name) { ids.insert(id) }
        }
        return ids
    }

    static func loadDirectory(_ dir: String) throws -> PretrainedModel {
        let configPath = join(dir, "config.json")
        guard let configData = FileManager.default.contents(atPath: configPath) else {
            throw HubError.invalid(path: configPath, reason: "cannot read file")
        }
        let json = (try? JSONSerialization.jsonObject(with: configData)) as? [String: Any]
        guard let json else { throw HubError.invalid(path: configPath, reason: "not a JSON object") }
        if let type = json["model_type"] as? String, !["llama", "smollm", "smollm3"].contains(type) {
            throw HubError.invalid(path: configPath, reason: "model_type '\(type)' is not supported (supported: llama)")
        }
        let config: LlamaConfig
        do { config = try JSONDecoder().decode(HFConfig.self, from: configData).llama }
        catch { throw HubError.invalid(path: configPath, reason: "cannot read the model config: \(error)") }
        let model = try LlamaModel(config: config)
        try SafetensorsWeights.load(directory: dir, into: model)

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
        return PretrainedModel(source: dir, format: isCheckpoint ? .checkpoint : .huggingface, model: model, tokenizer: tokenizer,
                               chatTemplate: template, bosToken: bos, eosToken: eos,
                               stopIds: stopIds(tokenizer, eos: eos, extra: extra))
    }
}
