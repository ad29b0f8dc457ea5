import ArgumentParser
import Foundation
import SmolJinja
import SmolWeights
import SmolHub
import SmolModel
import SmolTensor

/// Sampling options shared by generate, chat and serve.
struct SamplingOptions: ParsableArguments {
    @Option(help: "Tokens to generate at most.") var maxTokens: Int = 256
    @Flag(help: "Greedy decoding (same as --temperature 0).") var greedy = false
    @Option(help: "Softmax temperature; 0 is greedy.") var temperature: Float = 0.7
    @Option(help: "Keep the k most likely tokens (0 = all).") var topK: Int = 0
    @Option(help: "Keep the smallest set of tokens whose probability reaches p.") var topP: Float = 1
    @Option(help: "Keep tokens with at least min-p × the top token's probability.") var minP: Float = 0
    @Option(help: "Seed of the sampling stream.") var seed: UInt64 = 0
    @Option(help: "Stop before this string (repeatable).") var stop: [String] = []
    @Option(help: "KV cache format: f32, or f16 (half the memory traffic of long-context decoding; see bench/RESULTS.md for its logit error).")
    var kvCache: KVCacheFormat = .f32
    @Option(help: "Input format of the prompt's GEMMs: fp32, or bf16 (AMX / AVX512-BF16, about 2× faster prefill; decoding is unchanged; fp32 with a notice on CPUs without them).")
    var prefillPrecision: MatmulPrecision = .fp32

    func options() throws -> GenerationOptions {
        guard maxTokens >= 0 else { throw CLIError(message: "--max-tokens must be ≥ 0") }
        guard temperature >= 0, temperature.isFinite else { throw CLIError(message: "--temperature must be ≥ 0") }
        guard topK >= 0 else { throw CLIError(message: "--top-k must be ≥ 0") }
        guard topP > 0, topP <= 1 else { throw CLIError(message: "--top-p must be in (0, 1]") }
        guard minP >= 0, minP < 1 else { throw CLIError(message: "--min-p must be in [0, 1)") }
        var o = GenerationOptions()
        o.maxTokens = maxTokens; o.temperature = greedy ? 0 : temperature
        o.topK = topK; o.topP = topP; o.minP = minP; o.seed = seed; o.stop = stop
        return o
    }
}

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate text from a model (GGUF file, Hugging Face directory or checkpoint).",
        discussion: """
        The prompt is used as is, or with --chat rendered through the model's chat template as one
        user turn (and --system). Text streams as it is generated; --json prints the prompt ids,
        generated ids, text and speed instead. --batch FILE.jsonl generates for every line of FILE
        ({"messages": [...]} rendered through the chat template, or {"prompt": "..."} used as is)
        with one model load, printing one JSON line per input.

        Examples:
          smol generate SmolLM2-135M-Instruct.Q4_1.gguf --prompt "Once upon a time" --greedy
          smol generate model.gguf --chat --prompt "What is the capital of France?" --greedy --json
          smol generate runs/sft --batch questions.jsonl --greedy --max-tokens 40
        """)

    @Argument(help: "GGUF file, Hugging Face model directory, or checkpoint / run directory.") var model: String
    @Option(help: "Prompt text.") var prompt: String?
    @Option(help: "JSONL of {\"messages\": [...]} or {\"prompt\": \"...\"}, one generation per line (JSON lines out).") var batch: String?
    @Flag(help: "Render the prompt as a user turn with the model's chat template.") var chat = false
    @Option(help: "System message (with --chat).") var system: String?
    @OptionGroup var sampling: SamplingOptions
    @Flag(help: "Print JSON (prompt_ids, generated_ids, text, tokens/s) instead of streaming.") var json = false

    func validate() throws {
        if (prompt == nil) == (batch == nil) { throw ValidationError("give either --prompt or --batch") }
        if batch != nil && (chat || system != nil) { throw ValidationError("--batch lines carry their own messages; --chat and --system apply to --prompt") }
    }

    func run() throws {
        try runReportingErrors {
            let options = try sampling.options()
            let pretrained = try PretrainedModel.load(model)
            if let batch { return try runBatch(batch, pretrained: pretrained, options: options) }
            var text = prompt!
            if chat {
                var messages: [ChatMessage] = []
                if let s = system { messages.append(ChatMessage(role: "system", content: s)) }
                messages.append(ChatMessage(role: "user", content: prompt!))
                text = try pretrained.renderChat(messages, addGenerationPrompt: true)
            }
            let ids = pretrained.tokenizer.encode(text)
            let generator = Generator(pretrained, kvCache: sampling.kvCache, prefillPrecision: sampling.prefillPrecision.resolvedSayingWhy())
            let result = try generator.generate(promptIds: ids, options: options) { piece in
                if !json { print(piece, terminator: ""); fflush(stdout) }
            }
            if json {
                struct Out: Encodable {
                    let model: String; let prompt: String; let prompt_ids: [Int32]; let generated_ids: [Int32]; let text: String
                    let finish_reason: String; let prefill_tokens_per_second: Double; let decode_tokens_per_second: Double
                }
                printJSON(Out(model: pretrained.source, prompt: text, prompt_ids: ids, generated_ids: result.ids, text: result.text,
                              finish_reason: result.finishReason,
                              prefill_tokens_per_second: Double(ids.count) / max(result.prefillSeconds, 1e-9),
                              decode_tokens_per_second: Double(max(result.ids.count - 1, 0)) / max(result.decodeSeconds, 1e-9)))
            } else {
                print("")
            }
        }
    }

    /// One generation per JSONL line, in order, with one model load.
    func runBatch(_ path: String, pretrained: PretrainedModel, options: GenerationOptions) throws {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw CLIError(message: "\(path): cannot read file") }
        let generator = Generator(pretrained, kvCache: sampling.kvCache, prefillPrecision: sampling.prefillPrecision.resolvedSayingWhy())
        struct Out: Encodable { let line: Int; let prompt: String; let text: String; let generated_ids: [Int32]; let finish_reason: String }
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
            let place = "\(path):\(n + 1)"
            guard case let .object(o)? = try? JinjaJSON.parse(String(line)) else { throw CLIError(message: "\(place): expected a JSON object") }
            let rendered: String
            if case let .array(messages)? = o["messages"] {
                guard let chat = try? pretrained.chat() else { throw CLIError(message: "\(place): the model has no chat template for \"messages\"") }
                do { rendered = try chat.render(messages: .array(messages), addGenerationPrompt: true).text }
                catch { throw CLIError(message: "\(place): chat template: \(error)") }
            } else if case let .string(p)? = o["prompt"] {
                rendered = p
            } else {
                throw CLIError(message: "\(place): needs \"messages\" (an array) or \"prompt\" (a string)")
            }
            let ids = pretrained.tokenizer.encode(rendered)
            let r = try generator.generate(promptIds: ids, options: options) { _ in }
            printJSON(Out(line: n + 1, prompt: rendered, text: r.text, generated_ids: r.ids, finish_reason: r.finishReason))
            fflush(stdout)
        }
    }
}
