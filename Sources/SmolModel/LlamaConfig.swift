import Foundation

/// Llama-family decoder configuration. Keys are Hugging Face config.json names, plus SmolLM3's
/// NoPE options and `intra_document_masking` (a training-time choice that HF does not store).
/// `model_type` picks the variant of the one block: "llama" (and SmolLM2), "smollm3" (NoPE
/// layers), "qwen2" (q/k/v biases), "qwen3" (RMSNorm over each head of q and k, "QK-norm").
public struct LlamaConfig: Codable, Equatable, Sendable {
    /// The architectures the block implements, as Hugging Face `model_type` names.
    public static let supportedModelTypes = ["llama", "smollm3", "qwen2", "qwen3"]

    public var modelType: String
    public var vocabSize: Int
    public var hiddenSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var numKeyValueHeads: Int
    public var intermediateSize: Int
    public var rmsNormEps: Double
    public var ropeTheta: Double
    /// YaRN context extension (`rope_scaling`); nil is plain RoPE.
    public var ropeScaling: RopeScaling?
    public var tieWordEmbeddings: Bool
    public var maxPositionEmbeddings: Int
    public var headDimOverride: Int?
    /// SmolLM3: RoPE is removed in every Nth layer (layers N-1, 2N-1, ... counting from 0).
    public var noRopeLayerInterval: Int?
    /// SmolLM3's explicit form: one entry per layer, 1 = use RoPE, 0 = NoPE. Wins over the interval.
    public var noRopeLayers: [Int]?
    /// Attention stays inside each packed document; RoPE positions restart at each document.
    public var intraDocumentMasking: Bool
    /// Standard deviation of the normal initialisation of every matrix (HF `initializer_range`).
    public var initializerRange: Double
    public var hiddenAct: String

    public enum CodingKeys: String, CodingKey, CaseIterable {
        case vocabSize = "vocab_size", hiddenSize = "hidden_size", numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads", numKeyValueHeads = "num_key_value_heads"
        case intermediateSize = "intermediate_size", rmsNormEps = "rms_norm_eps", ropeTheta = "rope_theta"
        case tieWordEmbeddings = "tie_word_embeddings", maxPositionEmbeddings = "max_position_embeddings"
        case headDimOverride = "head_dim", noRopeLayerInterval = "no_rope_layer_interval"
        case noRopeLayers = "no_rope_layers", intraDocumentMasking = "intra_document_masking"
        case initializerRange = "initializer_range", hiddenAct = "hidden_act", modelType = "model_type"
        case ropeScaling = "rope_scaling"
    }

    /// Keys a config's model section may hold beside the model's own: `init_from` is read by the
    /// training config (the weights to start from), not by the model.
    public static let sectionKeys = ["init_from"]

    public init(vocabSize: Int, hiddenSize: Int, numHiddenLayers: Int, numAttentionHeads: Int,
                numKeyValueHeads: Int? = nil, intermediateSize: Int, rmsNormEps: Double = 1e-5,
                ropeTheta: Double = 10_000, tieWordEmbeddings: Bool = true, maxPositionEmbeddings: Int = 2048,
                headDim: Int? = nil, noRopeLayerInterval: Int? = nil, noRopeLayers: [Int]? = nil,
                intraDocumentMasking: Bool = false, initializerRange: Double = 0.02, modelType: String = "llama") {
        self.modelType = modelType
        self.vocabSize = vocabSize; self.hiddenSize = hiddenSize; self.numHiddenLayers = numHiddenLayers
        self.numAttentionHeads = numAttentionHeads; self.numKeyValueHeads = numKeyValueHeads ?? numAttentionHeads
        self.intermediateSize = intermediateSize; self.rmsNormEps = rmsNormEps; self.ropeTheta = ropeTheta
        self.tieWordEmbeddings = tieWordEmbeddings; self.maxPositionEmbeddings = maxPositionEmbeddings
        self.headDimOverride = headDim; self.noRopeLayerInterval = noRopeLayerInterval
        self.noRopeLayers = noRopeLayers; self.intraDocumentMasking = intraDocumentMasking
        self.initializerRange = initializerRange; self.hiddenAct = "silu"
    }

    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.rawValue) + LlamaConfig.sectionKeys, section: "model")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        modelType = try c.decodeIfPresent(String.self, forKey: .modelType) ?? "llama"
        vocabSize = try c.decode(Int.self, forKey: .vocabSize)
        hiddenSize = try c.decode(Int.self, forKey: .hiddenSize)
        numHiddenLayers = try c.decode(Int.self, forKey: .numHiddenLayers)
        numAttentionHeads = try c.decode(Int.self, forKey: .numAttentionHeads)
        numKeyValueHeads = try c.decodeIfPresent(Int.self, forKey: .numKeyValueHeads) ?? numAttentionHeads
        intermediateSize = try c.decode(Int.self, forKey: .intermediateSize)
        rmsNormEps = try c.decodeIfPresent(Double.self, forKey: .rmsNormEps) ?? 1e-5
        ropeTheta = try c.decodeIfPresent(Double.self, forKey: .ropeTheta) ?? 10_000
        tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tieWordEmbeddings) ?? true
        maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .maxPositionEmbeddings) ?? 2048
        headDimOverride = try c.decodeIfPresent(Int.self, forKey: .headDimOverride)
        noRopeLayerInterval = try c.decodeIfPresent(Int.self, forKey: .noRopeLayerInterval)
        noRopeLayers = try c.decodeIfPresent([Int].self, forKey: .noRopeLayers)
        intraDocumentMasking = try c.decodeIfPresent(Bool.self, forKey: .intraDocumentMasking) ?? false
        initializerRange = try c.decodeIfPresent(Double.self, forKey: .initializerRange) ?? 0.02
        hiddenAct = try c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? "silu"
        ropeScaling = try c.decodeIfPresent(RopeScaling.self, forKey: .ropeScaling)
    }

    public var headDim: Int { headDimOverride ?? (numAttentionHeads > 0 ? hiddenSize / numAttentionHeads : 0) }
    public var qDim: Int { numAttentionHeads * headDim }
    public var kvDim: Int { numKeyValueHeads * headDim }
    /// Qwen2 adds a bias to the q, k and v projections (not to o_proj).
    public var qkvBias: Bool { modelType == "qwen2" }
    /// Qwen3 normalises each head of q and k (RMSNorm with a [head_dim] weight) before RoPE.
    public var qkNorm: Bool { modelType == "qwen3" }

    /// Whether layer `i` (from 0) applies RoPE.
    public func usesRope(layer i: Int) -> Bool {
        if let list = noRopeLayers, i < list.count { return list[i] != 0 }
        if let n = noRopeLayerInterval, n > 0 { return (i + 1) % n != 0 }
        return true
    }

    /// Checks every value, naming the key of the first problem.
    public func validate() throws {
        func fail(_ key: CodingKeys, _ why: String) -> ConfigError { .invalidValue(key: "model.\(key.rawValue)", reason: why) }
        for (key, v) in [(CodingKeys.vocabSize, vocabSize), (.hiddenSize, hiddenSize), (.numHiddenLayers, numHiddenLayers),
                         (.numAttentionHeads, numAttentionHeads), (.numKeyValueHeads, numKeyValueHeads),
                         (.intermediateSize, intermediateSize), (.maxPositionEmbeddings, maxPositionEmbeddings)] where v <= 0 {
            throw fail(key, "must be a positive integer, got \(v)")
        }
        if headDimOverride == nil && hiddenSize % numAttentionHeads != 0 {
            throw fail(.numAttentionHeads, "\(numAttentionHeads) heads do not divide hidden_size \(hiddenSize)")
        }
        if let d = headDimOverride, d <= 0 { throw fail(.headDimOverride, "must be positive, got \(d)") }
        if numAttentionHeads % numKeyValueHeads != 0 {
            throw fail(.numKeyValueHeads, "\(numKeyValueHeads) KV heads do not divide num_attention_heads \(numAttentionHeads)")
        }
        if headDim % 2 != 0 { throw fail(.headDimOverride, "head dimension \(headDim) must be even for RoPE") }
        if !(rmsNormEps > 0) { throw fail(.rmsNormEps, "must be positive, got \(rmsNormEps)") }
        if !(ropeTheta > 0) { throw fail(.ropeTheta, "must be positive, got \(ropeTheta)") }
        try ropeScaling?.validate(maxPositionEmbeddings: maxPositionEmbeddings)
        if !(initializerRange >= 0) || !initializerRange.isFinite { throw fail(.initializerRange, "must be ≥ 0, got \(initializerRange)") }
        if let n = noRopeLayerInterval, n < 1 { throw fail(.noRopeLayerInterval, "must be ≥ 1, got \(n)") }
        if let list = noRopeLayers, list.count != numHiddenLayers || list.contains(where: { $0 != 0 && $0 != 1 }) {
            throw fail(.noRopeLayers, "needs \(numHiddenLayers) entries, each 0 or 1")
        }
        if !LlamaConfig.supportedModelTypes.contains(modelType) {
            throw fail(.modelType, "'\(modelType)' is not supported (supported: \(LlamaConfig.supportedModelTypes.joined(separator: ", ")))")
        }
        if hiddenAct != "silu" { throw fail(.hiddenAct, "only \"silu\" (SwiGLU) is supported, got \"\(hiddenAct)\"") }
        // Sizes beyond any model this runs: refused by key before any arithmetic could overflow
        // or any allocation abort.
        for (key, v, limit) in [(CodingKeys.vocabSize, vocabSize, 1 << 24), (.hiddenSize, hiddenSize, 1 << 17),
                                (.numHiddenLayers, numHiddenLayers, 1 << 14), (.numAttentionHeads, numAttentionHeads, 1 << 12),
                                (.intermediateSize, intermediateSize, 1 << 20), (.maxPositionEmbeddings, maxPositionEmbeddings, 1 << 24),
                                (.headDimOverride, headDim, 1 << 12)] where v > limit {
            throw fail(key, "\(v) is beyond any model this can hold (at most \(limit))")
        }
        let c = Double(hiddenSize), q = Double(numAttentionHeads * headDim), kv = Double(numKeyValueHeads * headDim)
        let params = Double(vocabSize) * c * (tieWordEmbeddings ? 1 : 2)
            + Double(numHiddenLayers) * (2 * c * q + 2 * c * kv + 3 * c * Double(intermediateSize) + 2 * c) + c
        if params > 1e12 {
            throw ConfigError.invalidValue(key: "model", reason: String(format: "%.3g parameters is beyond what this can hold (at most 1e12)", params))
        }
    }

    /// Exact parameter count: embeddings (twice if untied) + per layer (attention, MLP, two norms) + final norm.
    public var parameterCount: Int {
        let c = hiddenSize, f = intermediateSize
        let perLayer = c * qDim + 2 * c * kvDim + qDim * c + 3 * c * f + 2 * c
            + (qkvBias ? qDim + 2 * kvDim : 0) + (qkNorm ? 2 * headDim : 0)
        return vocabSize * c * (tieWordEmbeddings ? 1 : 2) + numHiddenLayers * perLayer + c
    }

    /// Model FLOPs per token (PaLM appendix B): 6N + 12·L·H·Q·T.
    public func modelFlopsPerToken(sequenceLength t: Int) -> Double {
        6 * Double(parameterCount) + 12 * Double(numHiddenLayers * numAttentionHeads * headDim) * Double(t)
    }
}

/// Configuration errors name the key (as a dotted path) and the reason.
public enum ConfigError: Error, CustomStringConvertible, Equatable {
    case unknownKey(key: String, known: [String])
    case missingKey(key: String)
    case invalidValue(key: String, reason: String)
    case invalidFile(path: String, reason: String)

    public var description: String {
        switch self {
        case let .unknownKey(key, known): return "unknown config key '\(key)' (known keys here: \(known.joined(separator: ", ")))"
        case let .missingKey(key): return "missing config key '\(key)'"
        case let .invalidValue(key, reason): return "invalid value for '\(key)': \(reason)"
        case let .invalidFile(path, reason): return "\(path): \(reason)"
        }
    }
}

struct AnyCodingKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

/// Throws `ConfigError.unknownKey` for the first key of the decoder's mapping not in `known`.
public func rejectUnknownKeys(_ decoder: Decoder, known: [String], section: String) throws {
    let c = try decoder.container(keyedBy: AnyCodingKey.self)
    let path = (decoder.codingPath.map(\.stringValue).filter { !$0.isEmpty }).joined(separator: ".")
    let prefix = path.isEmpty ? (section.isEmpty ? "" : section + ".") : path + "."
    for key in c.allKeys.map(\.stringValue).sorted() where !known.contains(key) {
        throw ConfigError.unknownKey(key: prefix + key, known: known)
    }
}
