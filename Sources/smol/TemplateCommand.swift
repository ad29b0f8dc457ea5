import ArgumentParser
import Foundation
import SmolWeights
import SmolHub
import SmolJinja
import SmolTokenizer

struct TemplateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "template",
        abstract: "Render and audit chat templates.",
        subcommands: [Render.self, Check.self])

    /// A model's template (with its tokenizer and special tokens) or a template file.
    static func load(_ path: String) throws -> (ChatTemplate, BPETokenizer?) {
        var isDir: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isDir)
        if exists, !isDir.boolValue, !path.hasSuffix(".gguf") {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw CLIError(message: "\(path): cannot read template") }
            do { return (try ChatTemplate(text), nil) } catch { throw CLIError(message: "\(path): \(error)") }
        }
        let m = try PretrainedModel.load(path)
        do { return (try m.chat(), m.tokenizer) } catch { throw CLIError(message: "\(path): \(error)") }
    }

    /// A conversation: an array of messages, or an object with "messages" and other variables.
    static func conversation(_ v: JinjaValue, where place: String) throws -> ([JinjaValue], JinjaObject) {
        switch v {
        case let .array(messages): return (messages, JinjaObject())
        case let .object(o):
            guard case let .array(messages)? = o["messages"] else { throw CLIError(message: "\(place): object without a \"messages\" array") }
            var extra = JinjaObject()
            for (k, x) in o.pairs where k != "messages" { extra[k] = x }
            return (messages, extra)
        default: throw CLIError(message: "\(place): expected an array of messages or an object with \"messages\"")
        }
    }

    struct Render: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a conversation rendered through a chat template.",
            discussion: """
            FILE.json holds an array of {"role", "content"} messages, or an object with "messages" and
            any other template variables (tools, enable_thinking, ...).

            Example:
              smol template render SmolLM2-135M-Instruct.Q4_1.gguf --messages chat.json --add-generation-prompt
            """)
        @Argument(help: "Model (GGUF file, HF directory, checkpoint) or a template file.") var model: String
        @Option(help: "Conversation JSON file.") var messages: String
        @Flag(help: "End with the assistant turn header.") var addGenerationPrompt = false

        func run() throws {
            try runReportingErrors {
                let (template, _) = try TemplateCommand.load(model)
                guard let text = try? String(contentsOfFile: messages, encoding: .utf8) else { throw CLIError(message: "\(messages): cannot read file") }
                let value: JinjaValue
                do { value = try JinjaJSON.parse(text) } catch { throw CLIError(message: "\(messages): \(error)") }
                let (msgs, extra) = try TemplateCommand.conversation(value, where: messages)
                print(try template.render(messages: .array(msgs), addGenerationPrompt: addGenerationPrompt, extra: extra).text, terminator: "")
            }
        }
    }

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Audit conversations through a chat template: role spans, dropped or injected system prompts, SFT loss tokens.",
            discussion: """
            FILE.jsonl holds one conversation per line. For each, prints where every message lands in
            the rendered text and in the token ids, which tokens would carry loss in SFT (assistant
            spans, or {% generation %} blocks), and flags: a message that does not appear, a system
            message missing from the output, and a default system prompt injected when the
            conversation has none. Exits 1 when anything is flagged.

            Example:
              smol template check SmolLM2-135M-Instruct.Q4_1.gguf --messages sft.jsonl
            """)
        @Argument(help: "Model (GGUF file, HF directory, checkpoint) or a template file.") var model: String
        @Option(help: "Conversations, one JSON per line.") var messages: String
        @Flag(help: "One JSON object per conversation.") var json = false

        func run() throws {
            try runReportingErrors {
                let (template, tokenizer) = try TemplateCommand.load(model)
                guard let text = try? String(contentsOfFile: messages, encoding: .utf8) else { throw CLIError(message: "\(messages): cannot read file") }
                var flagged = 0
                let masker = try TemplateAudit.masker(template: template, tokenizer: tokenizer)
                for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                    if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
                    let place = "\(messages):\(n + 1)"
                    let value: JinjaValue
                    do { value = try JinjaJSON.parse(String(line)) } catch { throw CLIError(message: "\(place): \(error)") }
                    let (msgs, extra) = try TemplateCommand.conversation(value, where: place)
                    let audit: TemplateAudit
                    do { audit = try TemplateAudit.run(masker: masker, messages: msgs, extra: extra, tokenizer: tokenizer) }
                    catch { throw CLIError(message: "\(place): \(error)") }
                    if !audit.flags.isEmpty { flagged += 1 }
                    if json { printJSON(audit); continue }
                    print("conversation \(place)")
                    for s in audit.spans {
                        let c = s.chars.map { "chars \($0[0])..<\($0[1])" } ?? "NOT FOUND"
                        let t = s.tokens.map { "  tokens \($0[0])..<\($0[1])" } ?? ""
                        print("  [\(s.index)] \(s.role.padding(toLength: 10, withPad: " ", startingAt: 0)) \(c)\(t)")
                    }
                    if tokenizer != nil { print("  loss tokens (SFT): \(audit.lossTokenCount) in \(audit.lossTokens.map { "\($0[0])..<\($0[1])" }.joined(separator: ", "))") }
                    for f in audit.flags { print("  FLAG: \(f)") }
                }
                if flagged > 0 {
                    if !json { print("\(flagged) conversation(s) flagged") }
                    throw ExitCode(1)
                }
            }
        }
    }
}
