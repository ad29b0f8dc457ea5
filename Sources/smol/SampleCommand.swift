import ArgumentParser
import Foundation
import SmolData
import SmolModel
import SmolTrainer

struct SampleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sample",
        abstract: "Sample a continuation from a trained checkpoint.",
        discussion: """
        CHECKPOINT is a checkpoint directory (runs/NAME/checkpoints/step_NNNNNNNN) or a run
        directory, whose newest checkpoint is used. Temperature 0 is greedy.

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

    func run() throws {
        try runReportingErrors {
            guard maxTokens >= 0 else { throw CLIError(message: "--max-tokens must be ≥ 0") }
            guard temperature >= 0, temperature.isFinite else { throw CLIError(message: "--temperature must be ≥ 0") }
            var path = checkpoint
            if !FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent("config.json")),
               let newest = Checkpoint.list(root: (path as NSString).appendingPathComponent("checkpoints")).last {
                path = newest.path
            }
            let model = try Checkpoint.loadModel(path: path)
            let tokenizer = ByteTokenizer()
            let promptIds = tokenizer.encode(prompt)
            var sampler = Sampler(temperature: temperature, topK: topK, seed: seed)
            if !json { print(prompt, terminator: ""); fflush(stdout) }
            // Stream text as it becomes valid UTF-8.
            var pending: [Int32] = []
            let ids = try sampler.generate(model: model, prompt: promptIds, maxTokens: maxTokens, stop: tokenizer.endOfText) { id in
                guard !json else { return }
                pending.append(id)
                let bytes = pending.map { UInt8(truncatingIfNeeded: $0) }
                if String(validating: bytes, as: UTF8.self) != nil || pending.count >= 4 {
                    print(tokenizer.decode(pending), terminator: ""); fflush(stdout); pending.removeAll()
                }
            }
            if json {
                struct Out: Encodable { let checkpoint: String; let prompt_ids: [Int32]; let generated_ids: [Int32]; let text: String }
                printJSON(Out(checkpoint: path, prompt_ids: promptIds, generated_ids: ids, text: tokenizer.decode(ids)))
            } else {
                if !pending.isEmpty { print(tokenizer.decode(pending), terminator: "") }
                print("")
            }
        }
    }
}
