import ArgumentParser
import Foundation
import SmolWeights
import SmolHub

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a model as a Hugging Face directory (config.json, model.safetensors, tokenizer files).",
        discussion: """
        MODEL is a GGUF file, a Hugging Face directory, or one of our checkpoints or run
        directories. transformers loads the result with AutoModelForCausalLM.from_pretrained(OUT)
        and computes the same logits. OUT must not exist yet.

        Examples:
          smol export runs/demo exported/demo
          smol export SmolLM2-135M-Instruct.Q4_1.gguf exported/smollm2-135m-instruct
        """)

    @Argument(help: "GGUF file, Hugging Face directory, or checkpoint / run directory.") var model: String
    @Argument(help: "Output directory (created).") var out: String

    func run() throws {
        try runReportingErrors {
            let m = try PretrainedModel.load(model)
            try Exporter.export(m, to: out)
            print("wrote \(out) (\(m.config.numHiddenLayers) layers, \(m.model.parameters.parameterCount) parameters, from \(m.format.rawValue) \(m.source))")
        }
    }
}
