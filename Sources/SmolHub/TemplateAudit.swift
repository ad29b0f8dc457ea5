import Foundation
import SmolWeights
import SmolJinja
import SmolTokenizer
import SmolData

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

    /// Computed by `ChatMasker`, the code path SFT data preparation uses. Without a tokenizer the
    /// spans and system checks are reported in characters only (token checks need the real one).
    public static func run(template: ChatTemplate, messages: [JinjaValue], extra: JinjaObject, tokenizer: BPETokenizer?) throws -> TemplateAudit {
        try run(masker: masker(template: template, tokenizer: tokenizer), messages: messages, extra: extra, tokenizer: tokenizer)
    }

    /// The masker an audit runs through (byte-level when there is no tokenizer). Build it once for
    /// many conversations: it probes the template for a default system prompt when made.
    public static func masker(template: ChatTemplate, tokenizer: BPETokenizer?) throws -> ChatMasker {
        ChatMasker(template: template, tokenizer: try tokenizer ?? BPETokenizer.bytes(specialTokens: []))
    }

    public static func run(masker: ChatMasker, messages: [JinjaValue], extra: JinjaObject, tokenizer: BPETokenizer?) throws -> TemplateAudit {
        var cache = BPETokenizer.WordCache()
        let c = try masker.mask(messages: messages, extra: extra, cache: &cache)
        let utf8 = Array(c.text.utf8)
        func char(_ byte: Int) -> Int { String(decoding: utf8[0..<byte], as: UTF8.self).count }
        func token(_ byte: Int) -> Int? { tokenizer == nil ? nil : c.byteOffsets.firstIndex { $0 >= byte } }
        var spans: [Span] = []
        for (i, m) in messages.enumerated() {
            let role = ChatMasker.field(m, "role") ?? "?"
            guard let r = c.contentBytes[i] else { spans.append(Span(index: i, role: role, chars: nil, tokens: nil)); continue }
            spans.append(Span(index: i, role: role, chars: [char(r.lowerBound), char(r.upperBound)],
                              tokens: token(r.lowerBound).flatMap { a in token(r.upperBound).map { [a, $0] } }))
        }
        var flags = c.failures.filter { tokenizer != nil || $0.0 != .assistantNotMasked }.map { "\($0.0.rawValue): \($0.1)" }
        if c.defaultSystemInjected, let d = masker.defaultSystemPrompt {
            flags.append("the template injects a default system prompt when the conversation has none: \"\(d)\"")
        }
        // Loss tokens as [start, end) runs of the mask.
        var loss: [[Int]] = []
        if tokenizer != nil {
            var t = 0
            while t < c.mask.count {
                if c.mask[t] == 0 { t += 1; continue }
                let start = t
                while t < c.mask.count && c.mask[t] != 0 { t += 1 }
                loss.append([start, t])
            }
        }
        return TemplateAudit(text: c.text, spans: spans, flags: flags, lossTokens: loss, lossTokenCount: c.lossTokenCount)
    }
}
