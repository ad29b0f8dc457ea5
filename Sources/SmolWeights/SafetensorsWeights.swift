import Foundation
import SmolFormats
import SmolModel

/// Weights from a Hugging Face directory: model.safetensors, or shards listed in
/// model.safetensors.index.json ("weight_map": tensor name -> shard file). F32, F16 and BF16.
enum SafetensorsWeights {
    static func load(directory dir: String, into model: LlamaModel) throws {
        let single = PretrainedModel.join(dir, "model.safetensors")
        let indexPath = PretrainedModel.join(dir, "model.safetensors.index.json")
        var fileOf: [String: String] = [:]
        if FileManager.default.fileExists(atPath: single) {
            for s in model.parameters.slots { fileOf[s.name] = single }
        } else if let data = FileManager.default.contents(atPath: indexPath) {
            guard let root = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
                  let map = root["weight_map"] as? [String: String] else {
                throw HubError.invalid(path: indexPath, reason: "no \"weight_map\" object")
            }
            for s in model.parameters.slots {
                guard let f = map[s.name] else { throw HubError.invalid(path: indexPath, reason: "weight_map has no entry for \(s.name)") }
                guard !f.contains("/") && !f.contains("..") else { throw HubError.invalid(path: indexPath, reason: "shard name '\(f)' leaves the directory") }
                fileOf[s.name] = PretrainedModel.join(dir, f)
            }
        } else {
            throw HubError.invalid(path: dir, reason: "no model.safetensors or model.safetensors.index.json")
        }
        var open: [String: SafetensorsFile] = [:]
        for s in model.parameters.slots {
            let path = fileOf[s.name]!
            if open[path] == nil { open[path] = try SafetensorsFile(path: path) }
            try open[path]!.read(s.name, shape: s.shape, into: model.parameters.values.pointer + s.offset)
        }
    }
}
