import ArgumentParser
import Foundation
import SmolWeights
import SmolHub
import SmolModel
import SmolTensor

extension BenchCommand {
    struct Generate: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "generate",
            abstract: "Inference speed: prefill and decode tokens/s with the KV cache.",
            discussion: """
            The prompt is the tokenised text "The history of the city " repeated and cut to
            --prompt-tokens; decoding is greedy for --decode-tokens. Each repeat starts from an empty
            cache; the median repeat is reported. bench/generate_bench.py runs this beside llama.cpp
            (llama-cpp-python) on the same GGUF file and thread count.

            Example:
              smol bench generate SmolLM2-135M-Instruct.Q4_1.gguf --prompt-tokens 256 --decode-tokens 64
            """)

        @Argument(help: "GGUF file, Hugging Face directory or checkpoint.") var model: String
        @Option(help: "Prompt length in tokens.") var promptTokens: Int = 256
        @Option(help: "Tokens to decode.") var decodeTokens: Int = 64
        @Option(help: "Repeats (the median is reported).") var repeats: Int = 3
        @Flag(help: "Print one JSON object.") var json = false

        func run() throws {
            try runReportingErrors {
                guard promptTokens > 0, decodeTokens > 0, repeats > 0 else { throw CLIError(message: "counts must be positive") }
                let pretrained = try PretrainedModel.load(model)
                var ids: [Int32] = []
                while ids.count < promptTokens { ids += pretrained.tokenizer.encode(String(repeating: "The history of the city ", count: 60)) }
                ids = Array(ids.prefix(promptTokens))
                let session = InferenceSession(model: pretrained.model, capacity: promptTokens + decodeTokens)
                var prefill: [Double] = [], decode: [Double] = []
                for _ in 0..<repeats {
                    session.reset()
                    let t0 = Date()
                    var logits = try session.feed(ids)
                    prefill.append(Double(promptTokens) / Date().timeIntervalSince(t0))
                    let t1 = Date()
                    for _ in 0..<decodeTokens { logits = try session.feed([Sampler.argmax(logits)]) }
                    decode.append(Double(decodeTokens) / Date().timeIntervalSince(t1))
                }
                func median(_ a: [Double]) -> Double { a.sorted()[a.count / 2] }
                struct Out: Encodable {
                    let model: String; let threads: Int; let prompt_tokens: Int; let decode_tokens: Int
                    let prefill_tokens_per_second: Double; let decode_tokens_per_second: Double
                }
                let out = Out(model: model, threads: Parallel.threads, prompt_tokens: promptTokens, decode_tokens: decodeTokens,
                              prefill_tokens_per_second: median(prefill), decode_tokens_per_second: median(decode))
                if json { printJSON(out) } else {
                    print(String(format: "threads %d  prefill %d tokens: %.1f tok/s  decode %d tokens: %.1f tok/s",
                                 out.threads, promptTokens, out.prefill_tokens_per_second, decodeTokens, out.decode_tokens_per_second))
                }
            }
        }
    }
}
