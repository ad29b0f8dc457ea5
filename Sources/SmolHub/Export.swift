import Foundation
import SmolFormats
import SmolModel
import SmolTokenizer
import SmolWeights

/// Writes a model as a Hugging Face directory that transformers loads (LlamaForCausalLM,
/// SmolLM3ForCausalLM, Qwen2ForCausalLM or Qwen3ForCausalLM) through `HFDirectoryWriter`, the
/// writer checkpoints use too.
/// The directory is assembled beside the target and renamed into place, so a failed export
/// leaves nothing half-written and never touches an existing directory.
public enum Exporter {
    /// `extraFiles` (name → bytes) are written into the directory too, e.g. a merge's recipe.
    public static func export(_ m: PretrainedModel, to out: String, extraFiles: [String: Data] = [:]) throws {
        let fm = FileManager.default
        if fm.fileExists(atPath: out) { throw HubError.invalid(path: out, reason: "already exists; export writes a new directory") }
        let tmp = out + ".tmp-\(getpid())"
        try? fm.removeItem(atPath: tmp)
        try fm.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        do {
            try write(m, into: tmp)
            for (name, data) in extraFiles {
                guard fm.createFile(atPath: (tmp as NSString).appendingPathComponent(name), contents: data) else {
                    throw HubError.invalid(path: out, reason: "cannot write \(name)")
                }
            }
            try fm.moveItem(atPath: tmp, toPath: out)
        } catch {
            try? fm.removeItem(atPath: tmp)
            throw error
        }
    }

    /// Writes a model as one GGUF file (`GGUFModelWriter`); never replaces an existing file.
    public static func exportGGUF(_ m: PretrainedModel, to out: String, type: GGUFExportType) throws {
        if FileManager.default.fileExists(atPath: out) { throw HubError.invalid(path: out, reason: "already exists; export writes a new file") }
        let name = ((m.source as NSString).lastPathComponent as NSString).deletingPathExtension
        try GGUFModelWriter.write(model: m.model, assets: m.assets, type: type, name: name, to: out)
    }

    static func write(_ m: PretrainedModel, into dir: String) throws {
        try HFDirectoryWriter.write(model: m.model, assets: m.assets, into: dir)
    }
}
