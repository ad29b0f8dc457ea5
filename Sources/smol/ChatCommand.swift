import ArgumentParser
import Foundation
import SmolJinja
import SmolWeights
import SmolHub

struct ChatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat",
        abstract: "Chat with a model in the terminal (multi-turn, through its chat template).",
        discussion: """
        Type a message and press Enter. Commands: /reset clears the conversation, /system TEXT sets
        the system message (and resets), /quit or end of input leaves. Each turn re-renders the
        whole conversation with the model's chat template and reuses the cached prefix.

        Example:
          smol chat SmolLM2-135M-Instruct.Q4_1.gguf --system "You are a terse assistant."
        """)

    @Argument(help: "GGUF file, Hugging Face directory, or checkpoint / run directory.") var model: String
    @Option(help: "System message.") var system: String?
    @OptionGroup var sampling: SamplingOptions

    func run() throws {
        try runReportingErrors {
            let options = try sampling.options()
            let pretrained = try PretrainedModel.load(model)
            let template = try pretrained.chat()
            let generator = Generator(pretrained, kvCache: sampling.kvCache, prefillPrecision: sampling.prefillPrecision.resolvedSayingWhy())
            var systemMessage = system
            var history: [ChatMessage] = []
            var cached: [Int32] = []
            let interactive = isatty(STDIN_FILENO) != 0
            if interactive { print("smol chat — \(pretrained.source) (/reset, /system TEXT, /quit)") }
            while true {
                if interactive { print("> ", terminator: ""); fflush(stdout) }
                guard let line = readLine() else { break }
                let text = line.trimmingCharacters(in: .whitespaces)
                if text.isEmpty { continue }
                if text == "/quit" || text == "/exit" { break }
                if text == "/reset" { history = []; cached = []; print("(conversation cleared)"); continue }
                if text.hasPrefix("/system") {
                    let s = text.dropFirst("/system".count).trimmingCharacters(in: .whitespaces)
                    systemMessage = s.isEmpty ? nil : s
                    history = []; cached = []
                    print(s.isEmpty ? "(system message removed; conversation cleared)" : "(system message set; conversation cleared)")
                    continue
                }
                if text.hasPrefix("/") { print("unknown command \(text) (/reset, /system TEXT, /quit)"); continue }
                history.append(ChatMessage(role: "user", content: text))
                let messages = (systemMessage.map { [ChatMessage(role: "system", content: $0)] } ?? []) + history
                let ids = pretrained.tokenizer.encode(try template.render(messages, addGenerationPrompt: true))
                // Reuse the KV cache for the part of the conversation already processed.
                var common = 0
                while common < min(cached.count, ids.count - 1), cached[common] == ids[common] { common += 1 }
                common = min(common, generator.session.length)   // the last sampled token was never fed
                generator.session.truncate(to: common)
                let result = try generator.generate(promptIds: Array(ids[common...]), options: options, reuseCache: true) { piece in
                    print(piece, terminator: ""); fflush(stdout)
                }
                print("")
                cached = Array(ids) + result.ids
                history.append(ChatMessage(role: "assistant", content: result.text))
            }
        }
    }
}
