import Foundation
import SmolModel

/// config.json as Hugging Face transformers reads it, for the architectures the one Llama block
/// implements: LlamaForCausalLM (SmolLM2), SmolLM3ForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM.
/// Reading refuses what the block would silently compute wrong (another architecture, an o_proj or
/// MLP bias, RoPE scaling other than YaRN, sliding windows) with the key that says so.
public struct HFConfig: Codable {
    public var torchDtype = "float32"
    public var llama: LlamaConfig

    /// transformers' class for each model_type.
    public static let architectures = ["llama": "LlamaForCausalLM", "smollm3": "SmolLM3ForCausalLM",
                                       "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"]

    enum ExtraKeys: String, CodingKey {
        case architectures, torchDtype = "torch_dtype", attentionBias = "attention_bias", mlpBias = "mlp_bias"
        case ropeScaling = "rope_scaling", useSlidingWindow = "use_sliding_window", numExperts = "num_experts"
        case numLocalExperts = "num_local_experts", ropeParameters = "rope_parameters", layerTypes = "layer_types"
    }

    /// transformers ≥ 5 keeps θ in `rope_parameters` (older files: top-level `rope_theta`, `rope_scaling`).
    struct RopeParameters: Decodable {
        var ropeTheta: Double?, ropeType: String?, type: String?
        enum CodingKeys: String, CodingKey { case ropeTheta = "rope_theta", ropeType = "rope_type", type }
        var kind: String { ropeType ?? type ?? "default" }
    }

    public init(_ llama: LlamaConfig) { self.llama = llama }

    public init(from decoder: Decoder) throws {
        // HF configs carry many keys we do not use; read only the ones the model needs.
        let c = try decoder.container(keyedBy: LlamaConfig.CodingKeys.self)
        let extra = try decoder.container(keyedBy: ExtraKeys.self)
        func opt<T: Decodable>(_ k: LlamaConfig.CodingKeys) throws -> T? { try c.decodeIfPresent(T.self, forKey: k) }
        func unsupported(_ key: String, _ why: String) -> ConfigError { .invalidValue(key: key, reason: why) }
        var type = try opt(.modelType) ?? "llama"
        if type == "smollm" { type = "llama" }
        guard HFConfig.architectures[type] != nil else {
            throw unsupported("model_type", "architecture '\(type)' is not supported (supported: \(LlamaConfig.supportedModelTypes.joined(separator: ", ")))")
        }
        for key in [ExtraKeys.numExperts, .numLocalExperts] {
            if let e = try extra.decodeIfPresent(Int.self, forKey: key), e > 0 {
                throw unsupported(key.rawValue, "a mixture of experts (\(e) experts) is not supported")
            }
        }
        // Qwen2's q/k/v biases come with the architecture; elsewhere attention_bias adds an o_proj bias too.
        if type != "qwen2", try extra.decodeIfPresent(Bool.self, forKey: .attentionBias) == true {
            throw unsupported("attention_bias", "attention biases are supported only as Qwen2's (q/k/v, no o_proj bias)")
        }
        if try extra.decodeIfPresent(Bool.self, forKey: .mlpBias) == true { throw unsupported("mlp_bias", "MLP biases are not supported") }
        var scaling: RopeScaling?
        for key in [ExtraKeys.ropeScaling, .ropeParameters] {
            if let rope = try extra.decodeIfPresent(RopeParameters.self, forKey: key), rope.kind != "default" {
                guard rope.kind == "yarn" else {
                    throw unsupported(key.rawValue, "RoPE scaling '\(rope.kind)' is not supported (default and yarn are; the model would run with the wrong positions)")
                }
                scaling = try extra.decode(RopeScaling.self, forKey: key)
            }
        }
        let theta = try extra.decodeIfPresent(RopeParameters.self, forKey: .ropeParameters)?.ropeTheta
        if let types = try extra.decodeIfPresent([String].self, forKey: .layerTypes), let other = types.first(where: { $0 != "full_attention" }) {
            throw unsupported("layer_types", "'\(other)' layers are not supported (only full attention)")
        }
        if try extra.decodeIfPresent(Bool.self, forKey: .useSlidingWindow) == true {
            throw unsupported("use_sliding_window", "sliding-window attention is not supported")
        }
        let act: String = try opt(.hiddenAct) ?? "silu"
        if act != "silu" { throw unsupported("hidden_act", "only \"silu\" (SwiGLU) is supported, got \"\(act)\"") }
        llama = LlamaConfig(vocabSize: try c.decode(Int.self, forKey: .vocabSize), hiddenSize: try c.decode(Int.self, forKey: .hiddenSize),
                            numHiddenLayers: try c.decode(Int.self, forKey: .numHiddenLayers),
                            numAttentionHeads: try c.decode(Int.self, forKey: .numAttentionHeads),
                            numKeyValueHeads: try opt(.numKeyValueHeads), intermediateSize: try c.decode(Int.self, forKey: .intermediateSize),
                            rmsNormEps: try opt(.rmsNormEps) ?? 1e-6, ropeTheta: try opt(.ropeTheta) ?? theta ?? 10_000,
                            tieWordEmbeddings: try opt(.tieWordEmbeddings) ?? (type == "smollm3"),
                            maxPositionEmbeddings: try opt(.maxPositionEmbeddings) ?? 2048, headDim: try opt(.headDimOverride),
                            noRopeLayerInterval: try opt(.noRopeLayerInterval) ?? (type == "smollm3" ? 4 : nil),
                            noRopeLayers: try opt(.noRopeLayers),
                            intraDocumentMasking: try opt(.intraDocumentMasking) ?? false,
                            initializerRange: try opt(.initializerRange) ?? 0.02, modelType: type)
        llama.ropeScaling = scaling
    }

    /// The model_type transformers must load: a Llama with NoPE layers is a SmolLM3.
    public var modelType: String {
        let noPE = (0..<llama.numHiddenLayers).contains { !llama.usesRope(layer: $0) }
        return llama.modelType == "llama" && noPE ? "smollm3" : llama.modelType
    }

    public func encode(to encoder: Encoder) throws {
        var model = llama
        model.modelType = modelType
        if model.modelType == "smollm3" {   // the explicit per-layer list, whatever the interval
            model.noRopeLayers = (0..<model.numHiddenLayers).map { model.usesRope(layer: $0) ? 1 : 0 }
        }
        try model.encode(to: encoder)
        var c = encoder.container(keyedBy: ExtraKeys.self)
        try c.encode([HFConfig.architectures[model.modelType] ?? "LlamaForCausalLM"], forKey: .architectures)
        try c.encode(torchDtype, forKey: .torchDtype)
        try c.encode(model.qkvBias, forKey: .attentionBias)
        try c.encode(false, forKey: .mlpBias)
    }

    /// Reads a config.json file, naming the file and the key on any problem.
    public static func read(_ path: String) throws -> LlamaConfig {
        guard let data = FileManager.default.contents(atPath: path) else { throw ConfigError.invalidFile(path: path, reason: "cannot read file") }
        guard (try? JSONSerialization.jsonObject(with: data)) is [String: Any] else {
            throw ConfigError.invalidFile(path: path, reason: "not a JSON object")
        }
        let config: LlamaConfig
        do { config = try JSONDecoder().decode(HFConfig.self, from: data).llama }
        catch let e as ConfigError { throw ConfigError.invalidFile(path: path, reason: e.description) }
        catch let DecodingError.keyNotFound(key, _) { throw ConfigError.invalidFile(path: path, reason: "missing key '\(key.stringValue)'") }
        catch let DecodingError.typeMismatch(_, ctx) {
            throw ConfigError.invalidFile(path: path, reason: "wrong type for '\(ctx.codingPath.map(\.stringValue).joined(separator: "."))'")
        }
        catch { throw ConfigError.invalidFile(path: path, reason: "cannot read the model config: \(error)") }
        do { try config.validate() } catch { throw ConfigError.invalidFile(path: path, reason: "\(error)") }
        return config
    }
}
