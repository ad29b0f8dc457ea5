import ArgumentParser
import Foundation
import SmolWeights
import SmolHub

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a model as a Hugging Face directory or a GGUF file for llama.cpp.",
        discussion: """
        MODEL is a GGUF file, a Hugging Face directory, or one of our checkpoints or run
        directories. transformers loads the result with AutoModelForCausalLM.from_pretrained(OUT)
        and computes the same logits. OUT ending in .gguf writes one GGUF file that llama.cpp (and
        Ollama, LM Studio) runs, with the tokenizer, chat template and special tokens; --type picks
        the matrices' type (f32, f16 or q8_0; norms stay f32). OUT must not exist yet.

        Examples:
          smol export runs/demo exported/demo
          smol export runs/sft sft.q8_0.gguf --type q8_0
          smol export SmolLM2-135M-Instruct.Q4_1.gguf exported/smollm2-135m-instruct
        """)

    @Argument(help: "GGUF file, Hugging Face directory, or checkpoint / run directory.") var model: String
    @Argument(help: "Output directory (created), or a .gguf file.") var out: String
    @Option(help: "GGUF tensor type: f32, f16 or q8_0 (only for a .gguf OUT).") var type: GGUFExportType?

    func validate() throws {
        if type != nil && !out.hasSuffix(".gguf") { throw ValidationError("--type applies to a .gguf output") }
    }

    func run() throws {
        try runReportingErrors {
            let m = try PretrainedModel.load(model, decodeWeights: false)
            if out.hasSuffix(".gguf") {
                let t = type ?? .f16
                try Exporter.exportGGUF(m, to: out, type: t)
                print("wrote \(out) (\(t.rawValue), \(m.config.numHiddenLayers) layers, \(m.model.parameters.parameterCount) parameters, from \(m.format.rawValue) \(m.source))")
                return
            }
            try Exporter.export(m, to: out)
            print("wrote \(out) (\(m.config.numHiddenLayers) layers, \(m.model.parameters.parameterCount) parameters, from \(m.format.rawValue) \(m.source))")
        }
    }
}

extension GGUFExportType: ExpressibleByArgument {}
