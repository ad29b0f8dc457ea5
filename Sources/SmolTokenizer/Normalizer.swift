import Foundation

/// Text normalisation before pre-tokenisation (tokenizer.json "normalizer"), as Hugging Face
/// `tokenizers` applies it to the text between added tokens. Qwen2 uses NFC; GPT-2, SmolLM and
/// Llama 3 use none.
public indirect enum Normalizer: Sendable {
    case nfc, nfd, nfkc, nfkd, lowercase
    case replace(String, String)
    case prepend(String)
    case strip(left: Bool, right: Bool)
    case sequence([Normalizer])

    public func apply(_ s: String) -> String {
        switch self {
        case .nfc: return s.precomposedStringWithCanonicalMapping
        case .nfd: return s.decomposedStringWithCanonicalMapping
        case .nfkc: return s.precomposedStringWithCompatibilityMapping
        case .nfkd: return s.decomposedStringWithCompatibilityMapping
        case .lowercase: return s.lowercased()
        case let .replace(a, b): return a.isEmpty ? s : s.replacingOccurrences(of: a, with: b, options: .literal)
        case let .prepend(p): return s.isEmpty ? s : p + s
        case let .strip(left, right):
            var u = Substring(s).unicodeScalars
            if left { while let f = u.first, f.properties.isWhitespace { u.removeFirst() } }
            if right { while let l = u.last, l.properties.isWhitespace { u.removeLast() } }
            return String(String.UnicodeScalarView(u))
        case let .sequence(list): return list.reduce(s) { $1.apply($0) }
        }
    }

    /// Parses tokenizer.json's "normalizer" (null means none).
    static func parse(_ json: Any?, path: String) throws -> Normalizer? {
        guard let obj = json as? [String: Any] else { return nil }
        func fail(_ r: String) -> TokenizerError { .invalid(path: path, reason: "normalizer: \(r)") }
        switch obj["type"] as? String ?? "" {
        case "NFC": return .nfc
        case "NFD": return .nfd
        case "NFKC": return .nfkc
        case "NFKD": return .nfkd
        case "Lowercase": return .lowercase
        case "Prepend": return .prepend(obj["prepend"] as? String ?? "")
        case "Strip": return .strip(left: obj["strip_left"] as? Bool ?? true, right: obj["strip_right"] as? Bool ?? true)
        case "Replace":
            guard let pattern = (obj["pattern"] as? [String: Any])?["String"] as? String else { throw fail("Replace supports only a String pattern") }
            return .replace(pattern, obj["content"] as? String ?? "")
        case "Sequence":
            return .sequence(try (obj["normalizers"] as? [Any] ?? []).compactMap { try parse($0, path: path) })
        case let t: throw fail("unsupported type '\(t)'")
        }
    }
}
