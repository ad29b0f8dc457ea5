import Foundation
import SmolFormats
import SmolModel
import SmolTokenizer

/// What a model needs beside its weights to be talked to: its tokenizer, chat template and
/// special tokens. Travels with every checkpoint and export.
public struct ModelAssets {
    public var tokenizer: BPETokenizer
    public var chatTemplate: String?
    public var bosToken: String?, eosToken: String?
    /// Ids that end generation (EOS and, for chat models, the end-of-turn token).
    public var stopIds: Set<Int32>

    public init(tokenizer: BPETokenizer, chatTemplate: String?, bosToken: String?, eosToken: String?, stopIds: Set<Int32>? = nil) {
        self.tokenizer = tokenizer; self.chatTemplate = chatTemplate; self.bosToken = bosToken; self.eosToken = eosToken
        self.stopIds = stopIds ?? ModelAssets.stopIds(tokenizer, eos: eosToken, extra: [])
    }

    /// A bare tokenizer.json: BOS from its post-processor's template, EOS the first end-of-text
    /// token it defines (no token is assumed that the tokenizer does not have).
    public init(tokenizer: BPETokenizer) {
        let special = Set(tokenizer.addedTokens.filter(\.special).map(\.content))
        let eos = ["<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>", "<|im_end|>"].first { special.contains($0) }
        self.init(tokenizer: tokenizer, chatTemplate: nil, bosToken: ModelAssets.leadingSpecial(tokenizer), eosToken: eos)
    }

    /// The special token the post-processor puts first (Llama 3's <|begin_of_text|>), if any.
    static func leadingSpecial(_ t: BPETokenizer) -> String? {
        guard case let .special(id)? = t.postProcessor?.single.first, Int(id) < t.idToToken.count else { return nil }
        return t.idToToken[Int(id)]
    }

    /// EOS plus the end-of-turn markers of common chat formats when the vocabulary has them.
    public static func stopIds(_ t: BPETokenizer, eos: String?, extra: [Int32]) -> Set<Int32> {
        var ids = Set(extra)
        for name in [eos, "<|im_end|>", "<|eot_id|>", "<|endoftext|>"].compactMap({ $0 }) {
            if let id = t.id(of: name) { ids.insert(id) }
        }
        return ids
    }
}

/// The one writer of Hugging Face model directories (checkpoints and `smol export` alike):
/// config.json (with the special token ids), generation_config.json, model.safetensors (float32,
/// HF tensor names) and, given assets, tokenizer.json and tokenizer_config.json (chat template and
/// special tokens). Every file is fsynced; the caller makes the directory appear atomically.
public enum HFDirectoryWriter {
    public static func write(model: LlamaModel, assets: ModelAssets?, into dir: String) throws {
        try write(config: model.config, parameters: model.parameters, assets: assets, into: dir)
    }

    /// The same from a configuration and the whole model's parameters (a tensor-parallel run
    /// gathers them into a store of the full model's layout).
    public static func write(config modelConfig: LlamaConfig, parameters: ParameterStore, assets: ModelAssets?, into dir: String) throws {
        func path(_ name: String) -> String { (dir as NSString).appendingPathComponent(name) }
        let bos = assets.flatMap { a in a.bosToken.flatMap { a.tokenizer.id(of: $0) } }.map(Int.init)
        let eos = assets.flatMap { a in a.eosToken.flatMap { a.tokenizer.id(of: $0) } }.map(Int.init)
        var config = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(HFConfig(modelConfig))) as! [String: Any]
        config["bos_token_id"] = bos ?? NSNull()
        config["eos_token_id"] = eos ?? NSNull()
        config["pad_token_id"] = NSNull()   // else transformers falls back to its class default (SmolLM3: 128004)
        try writeJSON(config, to: path("config.json"))
        try writeWeights(parameters, to: path("model.safetensors"))
        var generation: [String: Any] = [:]
        if let bos { generation["bos_token_id"] = bos }
        if let a = assets {
            let stops = a.stopIds.sorted().map(Int.init)
            if !stops.isEmpty { generation["eos_token_id"] = stops.count == 1 ? stops[0] as Any : stops as Any }
        }
        try writeJSON(generation, to: path("generation_config.json"))
        guard let a = assets else { return }
        try FileSink.writeDurably(try a.tokenizer.tokenizerJSON(), to: path("tokenizer.json"))
        var tc: [String: Any] = ["tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": modelConfig.maxPositionEmbeddings,
                                 "clean_up_tokenization_spaces": false]
        if let b = a.bosToken { tc["bos_token"] = b }
        if let e = a.eosToken { tc["eos_token"] = e }
        if let t = a.chatTemplate { tc["chat_template"] = t }
        try writeJSON(tc, to: path("tokenizer_config.json"))
    }

    /// model.safetensors: every parameter under its Hugging Face name.
    public static func writeWeights(_ model: LlamaModel, to path: String) throws { try writeWeights(model.parameters, to: path) }

    public static func writeWeights(_ params: ParameterStore, to path: String) throws {
        let tensors = params.slots.map { SafetensorsWriter.Tensor(name: $0.name, shape: $0.shape, data: params.values.pointer + $0.offset) }
        try SafetensorsWriter.write(tensors, metadata: ["format": "pt"], to: path)
    }

    static func writeJSON(_ object: Any, to path: String) throws {
        let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        try FileSink.writeDurably(data, to: path)
    }
}

/// Where a run keeps its checkpoints: RUN/checkpoints/step_NNNNNNNN/ (an HF directory plus the
/// optimizer and trainer state); ".tmp-" directories are being written and never count.
public enum CheckpointLayout {
    public static func root(run: String) -> String { (run as NSString).appendingPathComponent("checkpoints") }

    public static func directory(root: String, step: Int) -> String {
        (root as NSString).appendingPathComponent(String(format: "step_%08d", step))
    }

    /// Step directories under `root`, oldest first.
    public static func list(root: String) -> [(step: Int, path: String)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        return names.compactMap { name -> (Int, String)? in
            guard name.hasPrefix("step_"), let s = Int(name.dropFirst(5)) else { return nil }
            return (s, (root as NSString).appendingPathComponent(name))
        }.sorted { $0.0 < $1.0 }
    }
}
