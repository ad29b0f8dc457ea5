import Foundation
import SmolJinja
import SmolTokenizer

/// Why a conversation fails the system-prompt guard (the playbook's SmolLM3 "vibe check" bug: a
/// template that silently stripped every system message from the SFT data).
public enum ChatGuardFailure: String, Codable, CaseIterable, Sendable {
    /// A system message's content is not in the rendered text.
    case systemDropped = "system_dropped"
    /// A system message's content is not in the rendered text, but the template's own default is.
    case systemReplaced = "system_replaced"
    /// A user, assistant or tool message's content is not in the rendered text, in order.
    case contentAltered = "content_altered"
    /// An assistant message's tokens (content and end-of-turn) do not all carry loss.
    case assistantNotMasked = "assistant_not_masked"

    public var isSystem: Bool { self == .systemDropped || self == .systemReplaced }
}

/// One conversation rendered through its chat template and tokenised, with the tokens that carry
/// loss in SFT and what the guard found.
public struct MaskedConversation {
    public var text: String
    public var ids: [Int32]
    /// 1 where the token carries loss as a target: assistant content and its end-of-turn token
    /// ({% generation %} blocks when the template has them), or every token with `trainOnAll`.
    public var mask: [UInt8]
    /// UTF-8 offset of each token in `text`, plus the text's length.
    public var byteOffsets: [Int]
    /// Where each message's content lies in `text` (UTF-8 bytes), nil when it is not there.
    public var contentBytes: [Range<Int>?]
    /// The byte ranges that carry loss.
    public var lossBytes: [Range<Int>]
    /// Guard failures with a detail each (empty: the conversation passed).
    public var failures: [(ChatGuardFailure, String)]
    /// The conversation had no system message and the template put its own default there.
    public var defaultSystemInjected: Bool
    public var lossTokenCount: Int { mask.reduce(0) { $0 + Int($1) } }

    /// Keeps loss only on tokens from message `k`'s content on (a preference pair's completion:
    /// earlier assistant turns belong to the prompt).
    mutating func keepLoss(fromMessage k: Int) {
        guard let start = contentBytes[k]?.lowerBound else { mask = mask.map { _ in 0 }; return }
        for i in mask.indices where byteOffsets[i + 1] <= start { mask[i] = 0 }
    }
}

public struct ChatMaskingError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// Renders conversations through a chat template, tokenises them and locates the loss tokens on
/// token boundaries (never by re-encoding prefixes). The one code path of `smol data prepare
/// --format chat` and `smol template check`. Safe to share between threads (each passes its cache).
public final class ChatMasker: @unchecked Sendable {
    public let template: ChatTemplate
    public let tokenizer: BPETokenizer
    public let trainOnAll: Bool
    /// What the template puts where a system prompt goes when the conversation has none (nil: nothing).
    public let defaultSystemPrompt: String?
    let specialIds: Set<Int32>

    public init(template: ChatTemplate, tokenizer: BPETokenizer, trainOnAll: Bool = false) {
        self.template = template; self.tokenizer = tokenizer; self.trainOnAll = trainOnAll
        specialIds = Set(tokenizer.addedTokens.filter(\.special).map(\.id))
        defaultSystemPrompt = ChatMasker.probeDefaultSystemPrompt(template)
    }

    static func message(_ role: String, _ content: String) -> JinjaValue {
        .object(JinjaObject([("role", .string(role)), ("content", .string(content))]))
    }

    /// Renders [user: P] and [system: S, user: P]: the text the first puts between the system
    /// header and P (with the second's separator taken off) is the injected default.
    static func probeDefaultSystemPrompt(_ template: ChatTemplate) -> String? {
        let user = "\u{2063}USER-PROBE\u{2063}", system = "\u{2063}SYSTEM-PROBE\u{2063}"
        guard let plain = try? template.render(messages: .array([message("user", user)]), addGenerationPrompt: false).text,
              let probed = try? template.render(messages: .array([message("system", system), message("user", user)]), addGenerationPrompt: false).text,
              let s = probed.range(of: system), let u = plain.range(of: user) else { return nil }
        let header = String(probed[..<s.lowerBound])
        let afterSystem = probed[s.upperBound...]
        let between = afterSystem.range(of: user).map { String(afterSystem[..<$0.lowerBound]) } ?? ""
        let before = String(plain[..<u.lowerBound])
        guard before.hasPrefix(header), before.hasSuffix(between), before.count > header.count + between.count else { return nil }
        let injected = String(before.dropFirst(header.count).dropLast(between.count))
        return injected.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty ? nil : injected
    }

    /// Role and content of a message (nil when the message is not an object with string fields).
    public static func field(_ m: JinjaValue, _ key: String) -> String? {
        if case let .object(o) = m, case let .string(s)? = o[key] { return s }
        return nil
    }

    public func mask(messages: [JinjaValue], extra: JinjaObject = JinjaObject(), cache: inout BPETokenizer.WordCache) throws -> MaskedConversation {
        let output = try template.render(messages: .array(messages), addGenerationPrompt: false, extra: extra)
        let text = output.text
        let bytes = Array(text.utf8)
        let ids = tokenizer.encode(text, cache: &cache)
        guard let offsets = tokenizer.byteOffsets(of: ids, in: text) else {
            throw ChatMaskingError(message: "the tokenizer does not spell the rendered text byte for byte (a normaliser or stripped special tokens), so loss masks cannot be placed on token boundaries")
        }
        var failures: [(ChatGuardFailure, String)] = []
        // Each message's content, in order.
        var contentBytes: [Range<Int>?] = [], cursor = 0
        var hasSystem = false
        for (i, m) in messages.enumerated() {
            let role = ChatMasker.field(m, "role") ?? "?"
            let content = ChatMasker.field(m, "content") ?? ""
            if role == "system" { hasSystem = true }
            if content.isEmpty { contentBytes.append(nil); continue }
            let found = find(Array(content.utf8), in: bytes, from: cursor)
                ?? find(Array(content.trimmingCharacters(in: .whitespacesAndNewlines).utf8), in: bytes, from: cursor)
            contentBytes.append(found)
            if let r = found { cursor = r.upperBound; continue }
            if role == "system" {
                if let d = defaultSystemPrompt, text.contains(d) {
                    failures.append((.systemReplaced, "system message \(i) is replaced by the template's own \"\(d.prefix(80))\""))
                } else if text.range(of: "system", options: .caseInsensitive) != nil {
                    failures.append((.systemReplaced, "system message \(i) does not appear, but the template writes a system turn of its own"))
                } else {
                    failures.append((.systemDropped, "system message \(i) does not appear in the rendered text"))
                }
            } else {
                failures.append((.contentAltered, "message \(i) (\(role)) does not appear in the rendered text in order"))
            }
        }
        let injected = !hasSystem && defaultSystemPrompt.map { text.contains($0) } == true

        // The byte ranges that carry loss.
        var loss: [Range<Int>] = []
        if trainOnAll {
            loss = [0..<bytes.count]
        } else if !output.generationSpans.isEmpty {
            loss = output.generationSpans
        } else {
            for (i, m) in messages.enumerated() where ChatMasker.field(m, "role") == "assistant" {
                guard let r = contentBytes[i] else { continue }
                // Through the end-of-turn token: the first special token after the content, with
                // only whitespace between.
                var end = r.upperBound
                if let k = offsets.firstIndex(where: { $0 >= r.upperBound }), k < ids.count {
                    var j = k
                    while j < ids.count, !specialIds.contains(ids[j]),
                          bytes[offsets[j]..<offsets[j + 1]].allSatisfy({ $0 == 32 || $0 == 10 || $0 == 13 || $0 == 9 }) { j += 1 }
                    if j < ids.count, specialIds.contains(ids[j]) { end = offsets[j + 1] }
                    else { failures.append((.assistantNotMasked, "assistant message \(i) is not followed by an end-of-turn token")) }
                } else {
                    failures.append((.assistantNotMasked, "assistant message \(i) is not followed by an end-of-turn token"))
                }
                loss.append(r.lowerBound..<end)
            }
        }
        // A token carries loss when it overlaps a loss range (as Hugging Face's assistant masks mark
        // characters' tokens): a token that merges template whitespace with the content's first
        // character still teaches that character.
        var mask = [UInt8](repeating: 0, count: ids.count)
        for t in 0..<ids.count where loss.contains(where: { $0.lowerBound < offsets[t + 1] && offsets[t] < $0.upperBound }) { mask[t] = 1 }
        // Every assistant content must carry loss, token for token.
        if !trainOnAll {
            for (i, m) in messages.enumerated() where ChatMasker.field(m, "role") == "assistant" {
                guard let r = contentBytes[i] else { continue }
                let tokens = (0..<ids.count).filter { r.lowerBound < offsets[$0 + 1] && offsets[$0] < r.upperBound }
                if tokens.contains(where: { mask[$0] == 0 }) {
                    failures.append((.assistantNotMasked, "assistant message \(i) has tokens outside the loss mask"))
                }
            }
        }
        return MaskedConversation(text: text, ids: ids, mask: mask, byteOffsets: offsets, contentBytes: contentBytes,
                                  lossBytes: loss, failures: failures, defaultSystemInjected: injected)
    }

    /// First occurrence of `needle` in `haystack` at or after `from`.
    func find(_ needle: [UInt8], in haystack: [UInt8], from: Int) -> Range<Int>? {
        guard let first = needle.first, needle.count <= haystack.count - from else { return nil }
        var i = from
        let last = haystack.count - needle.count
        while i <= last {
            if haystack[i] == first && haystack[i..<(i + needle.count)].elementsEqual(needle) { return i..<(i + needle.count) }
            i += 1
        }
        return nil
    }
}
