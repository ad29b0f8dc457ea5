import Foundation
import SmolFormats
import SmolModel
import SmolTensor
import SmolTokenizer

/// Tensor types `smol export … OUT.gguf --type` writes.
public enum GGUFExportType: String, CaseIterable, Sendable {
    case f32, f16, q8_0

    var matrixType: GGUFTensorType { switch self { case .f32: .f32; case .f16: .f16; case .q8_0: .q8_0 } }
    /// llama.cpp's `general.file_type` (ALL_F32, MOSTLY_F16, MOSTLY_Q8_0).
    var fileType: UInt32 { switch self { case .f32: 0; case .f16: 1; case .q8_0: 7 } }
}

/// Writes a model as a GGUF that llama.cpp runs: its architecture's metadata (the keys
/// `GGUFModel.config` reads back), the tokenizer, chat template and special tokens, and the tensors
/// under llama.cpp's names, q/k rows permuted as llama.cpp's converter does for Llama-style models.
/// Matrices take the chosen type; norms and biases stay float32 (as llama.cpp's converter keeps them).
public enum GGUFModelWriter {
    public static func write(model: LlamaModel, assets: ModelAssets, type: GGUFExportType, name: String, to path: String) throws {
        let c = model.config
        guard let arch = GGUFModel.architectures.first(where: { $0.value.modelType == c.modelType })?.key else {
            throw HubError.invalid(path: path, reason: "model_type \(c.modelType) has no GGUF architecture here")
        }
        if arch == "smollm3", (0..<c.numHiddenLayers).contains(where: { c.usesRope(layer: $0) != (($0 + 1) % 4 != 0) }) {
            throw HubError.invalid(path: path, reason: "llama.cpp's smollm3 skips RoPE in every 4th layer; this model's no_rope_layers differ")
        }
        let permutes = GGUFModel.architectures[arch]!.permuted
        var w = GGUFWriter()
        let a = arch + "."
        w.metadata = [
            ("general.architecture", .string(arch)), ("general.name", .string(name)),
            ("general.file_type", .u32(type.fileType)), ("general.quantization_version", .u32(2)),
            (a + "context_length", .u32(UInt32(c.maxPositionEmbeddings))), (a + "embedding_length", .u32(UInt32(c.hiddenSize))),
            (a + "block_count", .u32(UInt32(c.numHiddenLayers))), (a + "feed_forward_length", .u32(UInt32(c.intermediateSize))),
            (a + "attention.head_count", .u32(UInt32(c.numAttentionHeads))), (a + "attention.head_count_kv", .u32(UInt32(c.numKeyValueHeads))),
            (a + "rope.freq_base", .f32(Float(c.ropeTheta))), (a + "attention.layer_norm_rms_epsilon", .f32(Float(c.rmsNormEps))),
            (a + "rope.dimension_count", .u32(UInt32(c.headDim))), (a + "vocab_size", .u32(UInt32(c.vocabSize))),
            (a + "attention.key_length", .u32(UInt32(c.headDim))), (a + "attention.value_length", .u32(UInt32(c.headDim))),
        ]
        if let y = c.ropeScaling {   // llama.cpp's YaRN keys (its mscale is YaRN's default attention factor)
            let f = y.parameters(dim: c.headDim, theta: c.ropeTheta, maxPositionEmbeddings: c.maxPositionEmbeddings).attentionFactor
            if abs(f - (y.factor > 1 ? 0.1 * Foundation.log(y.factor) + 1 : 1)) > 1e-6 {
                throw HubError.invalid(path: path, reason: "rope_scaling's attention factor \(f) has no GGUF key llama.cpp reads; only the default (0.1·ln(factor) + 1) exports")
            }
            w.metadata += [(a + "rope.scaling.type", .string("yarn")), (a + "rope.scaling.factor", .f32(Float(y.factor))),
                           (a + "rope.scaling.original_context_length", .u32(UInt32(y.originalMaxPositionEmbeddings ?? c.maxPositionEmbeddings))),
                           (a + "rope.scaling.yarn_beta_fast", .f32(Float(y.betaFast ?? 32))), (a + "rope.scaling.yarn_beta_slow", .f32(Float(y.betaSlow ?? 1)))]
        }
        do { w.metadata += try assets.tokenizer.ggufMetadata(bosToken: assets.bosToken, eosToken: assets.eosToken) }
        catch { throw HubError.invalid(path: path, reason: "\(error)") }
        if let t = assets.chatTemplate { w.metadata.append(("tokenizer.chat_template", .string(t))) }

        let store = model.parameters
        for slot in store.slots {
            let rows = slot.shape.count == 2 ? slot.shape[0] : 1, cols = slot.shape.last!
            let matrix = slot.shape.count == 2
            let tensorType: GGUFTensorType = !matrix ? .f32 : (type == .q8_0 && cols % 32 != 0 ? .f16 : type.matrixType)
            let permuted = permutes && matrix && (slot.name.hasSuffix("q_proj.weight") || slot.name.hasSuffix("k_proj.weight"))
            let src = store.values.pointer + slot.offset
            let headDim = c.headDim
            w.tensors.append(GGUFWriter.Tensor(name: GGUFModel.ggufName(slot.name), dimensions: slot.shape.reversed(), type: tensorType) { sink in
                // One row at a time: the GGUF row r is the Hugging Face row hfRow(r) when permuted.
                let rowBytes = GGUFFile.byteSize(type: tensorType.rawValue, dimensions: [cols])!
                let buffer = UnsafeMutableRawPointer.allocate(byteCount: rowBytes * 64, alignment: 64)
                defer { buffer.deallocate() }
                var r0 = 0
                while r0 < rows {
                    let n = min(64, rows - r0)
                    for i in 0..<n {
                        let r = r0 + i
                        let row = src + (permuted ? GGUFModel.hfRow(r, headDim: headDim) : r) * cols
                        let out = buffer + i * rowBytes
                        switch tensorType {
                        case .f32: out.copyMemory(from: row, byteCount: cols * 4)
                        case .f16: for j in 0..<cols { out.storeBytes(of: Float16(row[j]).bitPattern.littleEndian, toByteOffset: 2 * j, as: UInt16.self) }
                        default: GGUFWriter.quantizeQ8_0(row, count: cols, into: out)
                        }
                    }
                    try sink.write(UnsafeRawBufferPointer(start: buffer, count: n * rowBytes))
                    r0 += n
                }
            })
        }
        try w.write(to: path)
    }
}
