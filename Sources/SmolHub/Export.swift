import Foundation
import SmolFormats
import SmolModel
import SmolTokenizer
import SmolTrainer

/// Writes a model as a Hugging Face directory that transformers loads as LlamaForCausalLM:
/// config.json, model.safetensors (float32, HF tensor names), tokenizer.json,
/// tokenizer_config.json (chat template and special tokens) and generation_config.json.
/// The directory is assembled beside the target and renamed into place, so a failed export
/// leaves nothing half-written and never touches an existing directory.
public enum Exporter {
    public static func export(_ m: PretrainedModel, to out: String) throws {
        let fm = FileManager.default
        if fm.fileExists(atPath: out) { throw HubError.invalid(path: out, reason: "already exists; export writes a new directory") }
        let tmp = out + ".tmp-\(getpid())"
        try? fm.removeItem(atPath: tmp)
        try fm.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        do {
            try write(m, into: tmp)
            try fm.moveItem(atPath: tmp, toPath: out)
        } catch {
            try? fm.removeItem(atPath: tmp)
            throw error
        }
    }

    static func id(_ t: BPETokenizer, _ token: String?) -> Int? {
        guard let token else { return nil }
        return t.id(of: token).map(Int.init)
    }

    static func write(_ m: PretrainedModel, into dir: String) throws {
        func path(_ name: String) -> String { (dir as NSString).appendingPathComponent(name) }
        func json(_ object: Any, _ name: String) throws {
            let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            try data.write(to: URL(fileURLWithPath: path(name)))
        }
        let t = m.tokenizer
        let bos = id(t, m.bosToken), eos = id(t, m.eosToken)
        // config.json: our HF config plus the special token ids.
        var config = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(HFConfig(m.config))) as! [String: Any]
        config["bos_token_id"] = bos ?? NSNull()
        config["eos_token_id"] = eos ?? NSNull()
        try json(config, "config.json")
        try Checkpoint.writeModel(m.model, to: path("model.safetensors"))
        try t.tokenizerJSON().write(to: URL(fileURLWithPath: path("tokenizer.json")))
        var tc: [String: Any] = ["tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": m.config.maxPositionEmbeddings,
                                 "clean_up_tokenization_spaces": false]
        if let b = m.bosToken { tc["bos_token"] = b }
        if let e = m.eosToken { tc["eos_token"] = e }
        if let c = m.chatTemplate { tc["chat_template"] = c }
        try json(tc, "tokenizer_config.json")
        var gen: [String: Any] = [:]
        if let b = bos { gen["bos_token_id"] = b }
        let stops = m.stopIds.sorted().map(Int.init)
        if !stops.isEmpty { gen["eos_token_id"] = stops.count == 1 ? stops[0] as Any : stops as Any }
        try json(gen, "generation_config.json")
    }
}
