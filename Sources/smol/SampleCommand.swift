import ArgumentParser
import Foundation
import SmolWeights
import SmolHub

/// `smol generate` for a run: the same loader and generator, so the run's own tokenizer (its
/// tokenizer.json, or the byte-level one of a byte-level run) encodes the prompt and decodes the text.
struct SampleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sample",
        abstract: "Sample a continuation from a trained checkpoint.",
        discussion: """
        CHECKPOINT is a checkpoint directory (runs/NAME/checkpoints/step_NNNNNNNN) or a run
        directory, whose newest checkpoint is used. Temperature 0 is greedy. The prompt is
        encoded and the text decoded with the run's tokenizer.

        Example:
          smol sample runs/demo --prompt "The " --max-tokens 200 --temperature 0.8 --seed 7
        """)

    @Argument(help: "Checkpoint directory, or a run directory (its newest checkpoint).")
    var checkpoint: String
    @Option(help: "Text to continue.") var prompt: String = ""
    @Option(help: "Tokens to generate.") var maxTokens: Int = 200
    @Option(help: "Softmax temperature; 0 is greedy.") var temperature: Float = 0.8
    @Option(help: "Sample from the k most likely tokens (0 = all).") var topK: Int = 40
    @Option(help: "Seed of the sampling stream.") var seed: UInt64 = 0
    @Flag(help: "Print prompt ids, generated ids and text as JSON.") var json = false

    func validate() throws {
        guard maxTokens >= 0 else { throw ValidationError("--max-tokens must be ≥ 0") }
        guard temperature >= 0, temperature.isFinite else { throw ValidationError("--temperature must be ≥ 0") }
        guard topK >= 0 else { throw ValidationError("--top-k must be ≥ 0") }
    }

    func run() throws {
        try runReportingErrors {
            let pretrained = try PretrainedModel.load(checkpoint)
            let generator = Generator(pretrained)
            // A byte-level run has no BOS; the ids of an empty prompt start at end-of-text.
            var promptIds = pretrained.tokenizer.encode(prompt)
            if promptIds.isEmpty, let eos = pretrained.eosToken.flatMap({ pretrained.tokenizer.id(of: $0) }) { promptIds = [eos] }
            var options = GenerationOptions()
            options.maxTokens = maxTokens; options.temperature = temperature; options.topK = topK; options.seed = seed
            if !json { print(prompt, terminator: ""); fflush(stdout) }
            let result = try generator.generate(promptIds: promptIds, options: options) { text in
                if !json { print(text, terminator: ""); fflush(stdout) }
            }
            if json {
                struct Out: Encodable { let checkpoint: String; let prompt_ids: [Int32]; let generated_ids: [Int32]; let text: String }
                printJSON(Out(checkpoint: pretrained.source, prompt_ids: promptIds, generated_ids: result.ids, text: result.text))
            } else {
                print("")
            }
        }
    }
}
