import Foundation
import SmolWeights
import SmolJinja
import SmolTokenizer

/// Where each message of a conversation lands in the rendered chat text (and its tokens), and what
/// the template did that the data did not ask for: a dropped message, a system message that is
/// missing from the output, or a default system prompt injected when the conversation had none
/// (SmolLM2's template does this, and the playbook's persona bug was exactly this).
public struct TemplateAudit: Encodable {
    public struct Span: Encodable {
        public let index: Int, role: String
        public let chars: [Int]?        // [start, end) in characters, nil when not found
        public let tokens: [Int]?       // [start, end) in token ids
    }
    public let text: String
    public let spans: [Span]
    public let flags: [String]
    /// Token ranges that carry loss in SFT: {% generation %} blocks when the template has them,
    /// otherwise each assistant message's content.
    public let lossTokens: [[Int]]
    public let lossTokenCount: Int

    enum CodingKeys: String, CodingKey { case text, spans, flags, lossTokens = "loss_tokens", lossTokenCount = "loss_token_count" }

    public static func run(template: ChatTemplate, messages: [JinjaValue], extra: JinjaObject, tokenizer: BPETokenizer?) throws -> TemplateAudit {
        func field(_ m: JinjaValue, _ k: String) -> String? {
            if case let .object(o) = m, case let .string(s)? = o[k] { return s }
            return nil
        }
        let output = try template.render(messages: .array(messages), addGenerationPrompt: false, extra: extra)
        let text = output.text
        let chars = Array(text)
        func tokenIndex(_ charOffset: Int) -> Int? {
            tokenizer.map { $0.encode(String(chars[0..<charOffset])).count }
        }
        var spans: [Span] = [], flags: [String] = []
        var cursor = text.startIndex
        for (i, m) in messages.enumerated() {
            let role = field(m, "role") ?? "?"
            let content = field(m, "content") ?? ""
            var found: Range<String.Index>?
            if !content.isEmpty {
                found = text.range(of: content, range: cursor..<text.endIndex)
                    ?? text.range(of: content.trimmingCharacters(in: .whitespacesAndNewlines), range: cursor..<text.endIndex)
            }
            if let r = found {
                let a = text.distance(from: text.startIndex, to: r.lowerBound), b = text.distance(from: text.startIndex, to: r.upperBound)
                spans.append(Span(index: i, role: role, chars: [a, b], tokens: tokenIndex(a).flatMap { ta in tokenIndex(b).map { [ta, $0] } }))
                cursor = r.upperBound
            } else {
                spans.append(Span(index: i, role: role, chars: nil, tokens: nil))
                if !content.isEmpty {
                    flags.append(role == "system" ? "system message \(i) does not appear in the output (dropped or replaced)"
                                                  : "message \(i) (\(role)) does not appear in the output")
                }
            }
        }
        // A default system prompt: probe where a system message would go, then look for that
        // header in the rendering of the conversation without one.
        let hasSystem = messages.contains { field($0, "role") == "system" }
        if !hasSystem, let first = messages.first {
            let probe = "\u{2063}SYSTEM-PROBE\u{2063}"
            let probed = try template.render(messages: .array([.object(JinjaObject([("role", .string("system")), ("content", .string(probe))]))] + messages),
                                             addGenerationPrompt: false, extra: extra).text
            if let p = probed.range(of: probe), let firstContent = field(first, "content"),
               let userAt = text.range(of: firstContent) {
                let header = String(probed[..<p.lowerBound])
                let before = String(text[..<userAt.lowerBound])
                // Text between the system content and the first message in the probed rendering.
                let afterProbe = probed[p.upperBound...]
                let between = afterProbe.range(of: firstContent).map { String(afterProbe[..<$0.lowerBound]) } ?? ""
                if !header.isEmpty, before.hasPrefix(header), before.hasSuffix(between), before.count >= header.count + between.count {
                    let injected = String(before.dropFirst(header.count).dropLast(between.count))
                    flags.append("the template injects a default system prompt when the conversation has none: \"\(injected)\"")
                }
            }
        }
        var loss: [[Int]] = []
        if !output.generationSpans.isEmpty {
            let utf8 = Array(text.utf8)
            for r in output.generationSpans {
                let a = String(decoding: utf8[0..<r.lowerBound], as: UTF8.self).count
                let b = String(decoding: utf8[0..<r.upperBound], as: UTF8.self).count
                if let ta = tokenIndex(a), let tb = tokenIndex(b) { loss.append([ta, tb]) }
            }
        } else {
            loss = spans.filter { $0.role == "assistant" }.compactMap(\.tokens)
        }
        return TemplateAudit(text: text, spans: spans, flags: flags, lossTokens: loss, lossTokenCount: loss.reduce(0) { $0 + $1[1] - $1[0] })
    }
}
