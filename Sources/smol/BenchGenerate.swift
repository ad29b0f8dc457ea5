import ArgumentParser
import Foundation
import SmolWeights
import SmolHub
import SmolModel
import SmolTensor

extension KVCacheFormat: ExpressibleByArgument {}

extension BenchCommand {
    struct Generate: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "generate",
            abstract: "Inference speed: prefill and decode tokens/s with the KV cache.",
            discussion: """
            The prompt is the tokenised text "The history of the city " repeated and cut to
            --prompt-tokens; decoding is greedy for --decode-tokens. Each repeat starts from an empty
            cache; the median repeat is reported. bench/generate_bench.py runs this beside llama.cpp
            (llama-cpp-python) on the same GGUF file and thread count. With --kv-cache f16 the
            decoded tokens are fed again through a float32 cache and the logits compared (the
            cache's error: RMS over every decode step, relative to the logits' RMS, and the largest
            absolute difference).

            Example:
              smol bench generate SmolLM2-135M-Instruct.Q4_1.gguf --prompt-tokens 256 --decode-tokens 64
            """)

        @Argument(help: "GGUF file, Hugging Face directory or checkpoint.") var model: String
        @Option(help: "Prompt length in tokens.") var promptTokens: Int = 256
        @Option(help: "Tokens to decode.") var decodeTokens: Int = 64
        @Option(help: "Repeats (the median is reported).") var repeats: Int = 3
        @Option(help: "KV cache format: f32 or f16.") var kvCache: KVCacheFormat = .f32
        @Option(help: "Input format of the prompt's GEMMs: fp32 or bf16.") var prefillPrecision: MatmulPrecision = .fp32
        @Flag(help: "Print one JSON object.") var json = false

        func run() throws {
            try runReportingErrors {
                guard promptTokens > 0, decodeTokens > 0, repeats > 0 else { throw CLIError(message: "counts must be positive") }
                let pretrained = try PretrainedModel.load(model)
                var ids: [Int32] = []
                while ids.count < promptTokens { ids += pretrained.tokenizer.encode(String(repeating: "The history of the city ", count: 60)) }
                ids = Array(ids.prefix(promptTokens))
                let capacity = promptTokens + decodeTokens
                guard capacity <= pretrained.model.config.maxPositionEmbeddings else {
                    throw CLIError(message: "--prompt-tokens + --decode-tokens = \(capacity) exceeds the model's context of \(pretrained.model.config.maxPositionEmbeddings)")
                }
                let precision = prefillPrecision.resolvedSayingWhy()
                let session = InferenceSession(model: pretrained.model, capacity: capacity, kvCache: kvCache, prefillPrecision: precision)
                var prefill: [Double] = [], decode: [Double] = []
                var generated: [Int32] = [], stepLogits: [[Float]] = []
                for r in 0..<repeats {
                    session.reset()
                    let t0 = Date()
                    var logits = try session.feed(ids)
                    prefill.append(Double(promptTokens) / Date().timeIntervalSince(t0))
                    if r == 0 { stepLogits = [logits] }
                    let t1 = Date()
                    for _ in 0..<decodeTokens {
                        let next = Sampler.argmax(logits)
                        logits = try session.feed([next])
                        if r == 0 { generated.append(next); stepLogits.append(logits) }
                    }
                    decode.append(Double(decodeTokens) / Date().timeIntervalSince(t1))
                }
                // The cache's and the prefill format's error: the same tokens through a float32 cache, fp32 GEMMs.
                var error: (rms: Double, maxAbs: Double)?
                if kvCache != .f32 || precision != .fp32 {
                    let reference = InferenceSession(model: pretrained.model, capacity: capacity, kvCache: .f32)
                    var sq = 0.0, ref = 0.0, maxAbs = 0.0
                    for (i, ours) in stepLogits.enumerated() {
                        let exact = i == 0 ? try reference.feed(ids) : try reference.feed([generated[i - 1]])
                        for (a, b) in zip(ours, exact) {
                            let d = Double(a - b)
                            sq += d * d; ref += Double(b) * Double(b); maxAbs = max(maxAbs, abs(d))
                        }
                    }
                    error = ((sq / max(ref, 1e-30)).squareRoot(), maxAbs)
                }
                func median(_ a: [Double]) -> Double { a.sorted()[a.count / 2] }
                struct Out: Encodable {
                    let model: String; let threads: Int; let prompt_tokens: Int; let decode_tokens: Int
                    let prefill_tokens_per_second: Double; let decode_tokens_per_second: Double
                    let kv_cache: String; let prefill_precision: String
                    let logit_relative_rms_vs_f32: Double?; let logit_max_abs_vs_f32: Double?
                }
                let out = Out(model: model, threads: Parallel.threads, prompt_tokens: promptTokens, decode_tokens: decodeTokens,
                              prefill_tokens_per_second: median(prefill), decode_tokens_per_second: median(decode),
                              kv_cache: kvCache.rawValue, prefill_precision: precision.rawValue, logit_relative_rms_vs_f32: error?.rms, logit_max_abs_vs_f32: error?.maxAbs)
                if json { printJSON(out) } else {
                    print(String(format: "threads %d  prefill %d tokens: %.1f tok/s  decode %d tokens: %.1f tok/s",
                                 out.threads, promptTokens, out.prefill_tokens_per_second, decodeTokens, out.decode_tokens_per_second))
                    if let error {
                        print(String(format: "%@ cache, %@ prefill against f32, fp32: logits relative RMS %.2e, largest difference %.4f",
                                     kvCache.rawValue, precision.rawValue, error.rms, error.maxAbs))
                    }
                }
            }
        }
    }
}
