import ArgumentParser
import Foundation
import SmolWeights
import SmolHub

struct MergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Merge models of one architecture and tokenizer (linear soup or SLERP, as mergekit defines them).",
        discussion: """
        MODELS are GGUF files (quantised ones are dequantised), Hugging Face directories, checkpoints
        or run directories. linear: Σ wᵢθᵢ / Σ wᵢ per tensor (--weights, default equal). slerp: two
        models, each tensor interpolated along the arc between them at --t (0 gives the first);
        nearly parallel tensors (|cos| > 0.9995) are interpolated linearly. Arithmetic is in
        float64, so a model merged with itself comes back bit for bit. The result takes the first
        model's tokenizer and chat template; OUT (a new directory, or --gguf FILE) records the
        recipe in smol_merge.json.

        SmolLM3's final merge (its APO model with a mid-training checkpoint, to win back long context):
          smol merge runs/apo runs/mid-training --method linear --weights 0.9,0.1 --out merged/
        """)

    @Argument(help: "Models to merge (two or more; SLERP takes exactly two).") var models: [String]
    @Option(help: "linear or slerp.") var method: MergeMethod = .linear
    @Option(help: "Comma-separated weights for linear, one per model (normalised by their sum).") var weights: String?
    @Option(help: "SLERP interpolation factor in [0, 1].") var t: Double = 0.5
    @Option(help: "Output Hugging Face directory (must not exist).") var out: String?
    @Option(help: "Write a GGUF file instead of a directory.") var gguf: String?
    @Option(help: "GGUF tensor type with --gguf: f32, f16 or q8_0.") var type: GGUFExportType = .f16

    func validate() throws {
        guard models.count >= 2 else { throw ValidationError("give at least two models") }
        guard (out == nil) != (gguf == nil) else { throw ValidationError("give one of --out DIR or --gguf FILE") }
        if let g = gguf, !g.hasSuffix(".gguf") { throw ValidationError("--gguf must name a .gguf file") }
        if method == .slerp && models.count != 2 { throw ValidationError("--method slerp merges exactly two models, got \(models.count)") }
        if method == .slerp && weights != nil { throw ValidationError("--weights applies to --method linear; SLERP takes --t") }
        guard t.isFinite, (0...1).contains(t) else { throw ValidationError("--t must be in [0, 1]") }
        if let w = weights {
            let parts = w.split(separator: ",", omittingEmptySubsequences: false)
            guard parts.allSatisfy({ Double($0.trimmingCharacters(in: .whitespaces))?.isFinite == true }) else {
                throw ValidationError("--weights: give numbers separated by commas, e.g. 0.9,0.1")
            }
            guard parts.count == models.count else { throw ValidationError("--weights: \(parts.count) weights for \(models.count) models") }
        }
        for path in [out, gguf].compactMap({ $0 }) where FileManager.default.fileExists(atPath: path) {
            throw ValidationError("\(path) already exists; merge writes a new one")
        }
    }

    func run() throws {
        try runReportingErrors {
            let w = weights.map { $0.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces))! } }
            let loaded = try models.map { try PretrainedModel.load($0, decodeWeights: false) }
            let merged = try ModelMerge.merge(loaded, method: method, weights: w, t: t)
            var recipe: [String: Any] = ["method": method.rawValue, "models": models, "tool": "smol merge"]
            if method == .linear { recipe["weights"] = w ?? Array(repeating: 1.0, count: models.count) } else { recipe["t"] = t }
            let recipeData = try JSONSerialization.data(withJSONObject: recipe, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            if let g = gguf {
                try Exporter.exportGGUF(merged, to: g, type: type)
                print("wrote \(g) (\(type.rawValue); \(method.rawValue) merge of \(models.count) models)")
            } else if let dir = out {
                try Exporter.export(merged, to: dir, extraFiles: ["smol_merge.json": recipeData])
                print("wrote \(dir) (\(method.rawValue) merge of \(models.count) models, \(merged.model.parameters.parameterCount) parameters)")
            }
        }
    }
}

extension MergeMethod: ExpressibleByArgument {}
