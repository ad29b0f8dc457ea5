import Foundation
import SmolFormats
import SmolModel
import SmolTensor

/// Builds a model from a GGUF file: hyperparameters from the `ARCH.*` keys, tensors renamed to
/// Hugging Face names, and the Q/K rows put back in Hugging Face order where the converter
/// permuted them. Architectures: llama, smollm3 (NoPE every 4th layer, as llama.cpp runs it),
/// qwen2 (q/k/v biases), qwen3 (QK-norm).
///
/// llama.cpp's converter permutes the rows of q_proj and k_proj of Llama-style models within each
/// head so that RoPE can rotate adjacent pairs (x[2i], x[2i+1]); Hugging Face rotates halves (x[i],
/// x[i+D/2]). Within a head, GGUF row 2i+s holds Hugging Face row s·D/2 + i (s ∈ {0, 1}). Qwen
/// models keep Hugging Face's order (llama.cpp runs them with NeoX-style RoPE).
enum GGUFModel {
    /// GGUF architecture → (HF model_type, q/k rows permuted by the converter).
    static let architectures: [String: (modelType: String, permuted: Bool)] = [
        "llama": ("llama", true), "smollm3": ("smollm3", true), "qwen2": ("qwen2", false), "qwen3": ("qwen3", false)]

    static func config(_ g: GGUFFile) throws -> LlamaConfig {
        let m = g.metadata
        func fail(_ r: String) -> GGUFError { .malformed(path: g.path, reason: r) }
        let arch = m["general.architecture"]?.string ?? "?"
        guard let known = architectures[arch] else {
            throw fail("architecture '\(arch)' is not supported (supported: \(architectures.keys.sorted().joined(separator: ", ")))")
        }
        if let experts = m[arch + ".expert_count"]?.int, experts > 0 { throw fail("a mixture of experts (\(experts) experts) is not supported") }
        func int(_ key: String) throws -> Int {
            guard let v = m[arch + "." + key]?.int, v > 0 else { throw fail("missing or invalid metadata key \(arch).\(key)") }
            return v
        }
        guard let embed = g.tensorInfo("token_embd.weight"), embed.dimensions.count == 2 else { throw fail("no 2-D tensor token_embd.weight") }
        let heads = try int("attention.head_count"), hidden = try int("embedding_length")
        let headDim = m[arch + ".attention.key_length"]?.int ?? m[arch + ".rope.dimension_count"]?.int ?? hidden / heads
        var ropeScaling: RopeScaling?
        if let scaling = m[arch + ".rope.scaling.type"]?.string, scaling != "none" {
            guard scaling == "yarn" else { throw fail("RoPE scaling '\(scaling)' is not supported (none and yarn are)") }
            guard let factor = m[arch + ".rope.scaling.factor"]?.double else { throw fail("\(arch).rope.scaling.factor is missing") }
            ropeScaling = RopeScaling(factor: factor, originalMaxPositionEmbeddings: m[arch + ".rope.scaling.original_context_length"]?.int,
                                      betaFast: m[arch + ".rope.scaling.yarn_beta_fast"]?.double,
                                      betaSlow: m[arch + ".rope.scaling.yarn_beta_slow"]?.double)
        }
        var c = LlamaConfig(vocabSize: m[arch + ".vocab_size"]?.int ?? embed.dimensions[1], hiddenSize: hidden,
                            numHiddenLayers: try int("block_count"), numAttentionHeads: heads,
                            numKeyValueHeads: m[arch + ".attention.head_count_kv"]?.int ?? heads,
                            intermediateSize: try int("feed_forward_length"),
                            rmsNormEps: m[arch + ".attention.layer_norm_rms_epsilon"]?.double ?? 1e-5,
                            ropeTheta: m[arch + ".rope.freq_base"]?.double ?? 10_000,
                            tieWordEmbeddings: g.tensorInfo("output.weight") == nil,
                            maxPositionEmbeddings: m[arch + ".context_length"]?.int ?? 2048,
                            headDim: headDim == hidden / heads ? nil : headDim,
                            noRopeLayerInterval: known.modelType == "smollm3" ? 4 : nil, modelType: known.modelType)
        c.rmsNormEps = Double(Float(c.rmsNormEps))   // stored as float32; keep the value the file holds
        c.ropeScaling = ropeScaling
        do { try c.validate() } catch { throw fail("its \(arch).* metadata gives an invalid model: \(error)") }
        return c
    }

    /// GGUF tensor name for a Hugging Face parameter name.
    static func ggufName(_ hf: String) -> String {
        let fixed = ["model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
                     "lm_head.weight": "output.weight"]
        if let f = fixed[hf] { return f }
        let parts = hf.split(separator: ".")   // model.layers.N.<module>.<proj>.weight
        let layer = parts[2]
        let suffix = parts[3...].joined(separator: ".")
        let map = ["input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
                   "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
                   "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
                   "self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias", "self_attn.v_proj.bias": "attn_v.bias",
                   "self_attn.q_norm.weight": "attn_q_norm.weight", "self_attn.k_norm.weight": "attn_k_norm.weight",
                   "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
                   "mlp.down_proj.weight": "ffn_down.weight"]
        return "blk.\(layer).\(map[suffix] ?? suffix)"
    }

    /// Hugging Face row of GGUF row r in a q/k matrix with `headDim`-row heads (the inverse permutation).
    static func hfRow(_ r: Int, headDim d: Int) -> Int {
        let head = r / d, j = r % d
        return head * d + (j % 2) * (d / 2) + j / 2
    }

    static func load(_ path: String, decodeWeights: Bool = true) throws -> (LlamaModel, GGUFFile) {
        let g = try GGUFFile(path: path)
        let config = try config(g)
        let permutes = architectures[g.metadata["general.architecture"]?.string ?? ""]?.permuted ?? true
        let model = try LlamaModel(config: config)
        let store = model.parameters
        var layers = [[String: BlockMatrix]](repeating: [:], count: config.numHiddenLayers)
        var head: BlockMatrix?
        for slot in store.slots {
            let name = ggufName(slot.name)
            guard let info = g.tensorInfo(name) else { throw GGUFError.malformed(path: path, reason: "missing tensor \(name) (for \(slot.name))") }
            guard info.dimensions == slot.shape.reversed() else {
                throw GGUFError.malformed(path: path, reason: "tensor \(name) has dimensions \(info.dimensions), the config needs \(Array(slot.shape.reversed()))")
            }
            let dst = store.values.pointer + slot.offset
            let isQ = slot.name.hasSuffix("q_proj.weight"), isK = slot.name.hasSuffix("k_proj.weight")
            let permuted = permutes && (isQ || isK) && slot.shape.count == 2
            let cols = slot.shape.count == 2 ? slot.shape[1] : 1
            let format: BlockFormat? = switch GGUFTensorType(rawValue: info.type) {
            case .q8_0: .q8_0; case .q4_1: .q4_1; case .q4_0: .q4_0; default: nil }
            if permuted {
                let tmp = FloatBuffer(count: slot.count)
                try g.floats(info, into: tmp.pointer)
                for r in 0..<slot.shape[0] {
                    (dst + hfRow(r, headDim: config.headDim) * cols).update(from: tmp.pointer + r * cols, count: cols)
                }
            } else {
                try g.floats(info, into: dst)
            }
            // Quantised matrices also keep their blocks for decoding (rows unpermuted the same way).
            guard decodeWeights, slot.shape.count == 2, let f = format else { continue }
            let matrix = g.withTensorBytes(info) { raw -> BlockMatrix in
                guard permuted else { return BlockMatrix(format: f, rows: slot.shape[0], cols: cols, raw: raw) }
                let rowBytes = cols / 32 * f.blockBytes
                let reordered = UnsafeMutableRawPointer.allocate(byteCount: slot.shape[0] * rowBytes, alignment: 64)
                defer { reordered.deallocate() }
                for r in 0..<slot.shape[0] {
                    (reordered + hfRow(r, headDim: config.headDim) * rowBytes).copyMemory(from: raw + r * rowBytes, byteCount: rowBytes)
                }
                return BlockMatrix(format: f, rows: slot.shape[0], cols: cols, raw: reordered)
            }
            if slot.name.hasPrefix("model.layers.") {
                let parts = slot.name.split(separator: ".")
                layers[Int(parts[2])!][parts[3...].joined(separator: ".")] = matrix
            } else if slot.name == (config.tieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight") {
                head = matrix
            }
        }
        if decodeWeights { model.decodeWeights = DecodeWeights(layers: layers, head: head) }
        return (model, g)
    }
}
