import ArgumentParser
import Foundation
import SmolModel
import SmolTrainer

struct ParamsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "params",
        abstract: "Print a config's exact parameter count, FLOPs per token and training memory.",
        discussion: "Example:\n  smol params configs/smollm2-135m.yaml --json")

    @Argument(help: "A training YAML config.") var config: String
    @Option(name: .customLong("set"), help: "Override a config key.") var overrides: [String] = []
    @Flag(help: "Print as JSON.") var json = false

    func run() throws {
        try runReportingErrors {
            let cfg = try TrainConfig.load(path: config, overrides: overrides)
            let m = cfg.model
            let n = m.parameterCount
            struct Out: Encodable {
                let parameters: Int; let embedding_parameters: Int; let flops_per_token: Double
                let weights_grads_adam_bytes: Int; let seq_len: Int
            }
            let o = Out(parameters: n, embedding_parameters: m.vocabSize * m.hiddenSize * (m.tieWordEmbeddings ? 1 : 2),
                        flops_per_token: m.modelFlopsPerToken(sequenceLength: cfg.training.seqLen),
                        weights_grads_adam_bytes: n * 16, seq_len: cfg.training.seqLen)
            if json { printJSON(o); return }
            print("parameters              \(n) (\(formatCount(n)))")
            print("embedding parameters    \(o.embedding_parameters)\(m.tieWordEmbeddings ? " (tied)" : "")")
            print(String(format: "model FLOPs per token   %.4g (6N + 12·L·H·Q·T at T = %d)", o.flops_per_token, cfg.training.seqLen))
            print(String(format: "weights+grads+AdamW     %.2f GB (fp32, 16 bytes per parameter)", Double(o.weights_grads_adam_bytes) / 1e9))
        }
    }
}
