/// Special tokens added around an encoded text (tokenizer.json "post_processor"), as
/// `tokenizers`' encode(text, add_special_tokens=True) adds them: Llama 3's TemplateProcessing puts
/// <|begin_of_text|> first; RoBERTa/BERT processors wrap the text in CLS … SEP; ByteLevel adds nothing.
public struct PostProcessor: Sendable {
    public enum Piece: Sendable, Equatable { case special(Int32), text }
    public let single: [Piece]

    public init(single: [Piece]) { self.single = single }

    public func apply(_ ids: [Int32]) -> [Int32] {
        single.flatMap { piece -> [Int32] in
            switch piece { case let .special(id): return [id]; case .text: return ids }
        }
    }

    /// Parses tokenizer.json's "post_processor"; nil when it adds nothing.
    static func parse(_ json: Any?, path: String) throws -> PostProcessor? {
        guard let obj = json as? [String: Any] else { return nil }
        func fail(_ r: String) -> TokenizerError { .invalid(path: path, reason: "post_processor: \(r)") }
        func idOf(_ pair: Any?) -> Int32? { ((pair as? [Any])?.last as? Int).map(Int32.init) }
        switch obj["type"] as? String ?? "" {
        case "ByteLevel": return nil
        case "RobertaProcessing", "BertProcessing":
            guard let cls = idOf(obj["cls"]), let sep = idOf(obj["sep"]) else { throw fail("cls and sep must be [token, id]") }
            return PostProcessor(single: [.special(cls), .text, .special(sep)])
        case "TemplateProcessing":
            let specials = obj["special_tokens"] as? [String: Any] ?? [:]
            var pieces: [Piece] = []
            for case let item as [String: Any] in obj["single"] as? [Any] ?? [] {
                if let s = item["SpecialToken"] as? [String: Any], let name = s["id"] as? String {
                    guard let entry = specials[name] as? [String: Any], let ids = entry["ids"] as? [Int] else {
                        throw fail("special token '\(name)' is not in special_tokens")
                    }
                    pieces += ids.map { .special(Int32($0)) }
                } else if item["Sequence"] != nil { pieces.append(.text) }
            }
            return pieces == [.text] ? nil : PostProcessor(single: pieces)
        case "Sequence":
            let parts = try (obj["processors"] as? [Any] ?? []).compactMap { try parse($0, path: path) }
            guard parts.count <= 1 else { throw fail("a Sequence with more than one id-adding processor is not supported") }
            return parts.first
        case let t: throw fail("unsupported type '\(t)'")
        }
    }
}
