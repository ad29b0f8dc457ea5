import Foundation

public enum TokenizerError: Error, CustomStringConvertible {
    case invalid(path: String, reason: String)
    public var description: String {
        switch self { case let .invalid(path, reason): return "\(path): \(reason)" }
    }
}

/// A token that is matched in the raw text before pre-tokenisation (`added_tokens` in tokenizer.json).
public struct AddedToken: Sendable {
    public let id: Int32, content: String
    public let special: Bool, lstrip: Bool, rstrip: Bool
}

/// Byte-level BPE as Hugging Face `tokenizers` runs it: added tokens split the text first, the
/// pre-tokenizer splits the rest, each piece becomes a byte-level string and merges apply by rank.
public final class BPETokenizer {
    public let vocab: [String: Int32]
    public let idToToken: [String]
    let merges: [UInt64: (rank: Int32, id: Int32)]   // (left id, right id) -> rank and merged id
    public let addedTokens: [AddedToken]
    let preTokenizer: PreTokenizer
    public let normalizer: Normalizer?
    public let postProcessor: PostProcessor?
    let ignoreMerges: Bool
    private var cache: WordCache = [:]

    public var vocabSize: Int { idToToken.count }

    /// The same tokens: every id's string, the merges with their ranks, and the added tokens.
    /// What a token id means to a model's weights; the file layout (tokenizer.json or GGUF) and
    /// the pre-tokenizer's spelling do not matter.
    public func hasSameTokens(as other: BPETokenizer) -> Bool {
        guard idToToken == other.idToToken, merges.count == other.merges.count else { return false }
        for (k, v) in merges { guard let w = other.merges[k], w.rank == v.rank, w.id == v.id else { return false } }
        func added(_ t: BPETokenizer) -> [String] { t.addedTokens.map { "\($0.id) \($0.content) \($0.special)" }.sorted() }
        return added(self) == added(other)
    }

    public init(vocab: [String: Int32], merges: [(String, String)], addedTokens: [AddedToken], preTokenizer: PreTokenizer,
                normalizer: Normalizer? = nil, postProcessor: PostProcessor? = nil,
                ignoreMerges: Bool = false, source: String = "<tokenizer>") throws {
        self.vocab = vocab
        let size = max(Int(vocab.values.max() ?? -1), Int(addedTokens.map(\.id).max() ?? -1)) + 1
        var names = [String](repeating: "", count: size)
        for (t, id) in vocab { names[Int(id)] = t }
        for a in addedTokens { names[Int(a.id)] = a.content }
        idToToken = names
        var table: [UInt64: (Int32, Int32)] = [:]
        for (rank, (a, b)) in merges.enumerated() {
            guard let ia = vocab[a], let ib = vocab[b], let merged = vocab[a + b] else {
                throw TokenizerError.invalid(path: source, reason: "merge \(rank) '\(a) \(b)' uses a token missing from the vocabulary")
            }
            let key = UInt64(UInt32(ia)) << 32 | UInt64(UInt32(ib))
            if table[key] == nil { table[key] = (Int32(rank), merged) }
        }
        self.merges = table
        self.addedTokens = addedTokens.sorted { $0.content.utf8.count > $1.content.utf8.count }   // longest first
        self.preTokenizer = preTokenizer
        self.normalizer = normalizer
        self.postProcessor = postProcessor
        self.ignoreMerges = ignoreMerges
    }

    /// Loads a Hugging Face tokenizer.json with a BPE model.
    public convenience init(path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else { throw TokenizerError.invalid(path: path, reason: "cannot read file") }
        guard let root = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw TokenizerError.invalid(path: path, reason: "not a JSON object")
        }
        guard let model = root["model"] as? [String: Any], (model["type"] as? String ?? "BPE") == "BPE",
              let vocabJSON = model["vocab"] as? [String: Any], let mergesJSON = model["merges"] as? [Any] else {
            throw TokenizerError.invalid(path: path, reason: "model must be BPE with vocab and merges")
        }
        var vocab: [String: Int32] = [:]
        for (k, v) in vocabJSON {
            guard let i = v as? Int else { throw TokenizerError.invalid(path: path, reason: "vocab entry '\(k)' is not an integer id") }
            vocab[k] = try BPETokenizer.checkedID(i, of: "vocab entry '\(k)'", path: path)
        }
        var merges: [(String, String)] = []
        for (i, m) in mergesJSON.enumerated() {
            if let s = m as? String, let sp = s.firstIndex(of: " ") {   // "a b" form
                merges.append((String(s[..<sp]), String(s[s.index(after: sp)...])))
            } else if let pair = m as? [String], pair.count == 2 {        // ["a", "b"] form
                merges.append((pair[0], pair[1]))
            } else { throw TokenizerError.invalid(path: path, reason: "merge \(i) is neither \"a b\" nor [\"a\", \"b\"]") }
        }
        var added: [AddedToken] = []
        for case let t as [String: Any] in root["added_tokens"] as? [Any] ?? [] {
            guard let id = t["id"] as? Int, let content = t["content"] as? String else { continue }
            added.append(AddedToken(id: try BPETokenizer.checkedID(id, of: "added token '\(content)'", path: path), content: content, special: t["special"] as? Bool ?? false,
                                    lstrip: t["lstrip"] as? Bool ?? false, rstrip: t["rstrip"] as? Bool ?? false))
        }
        let pre = try BPETokenizer.parsePreTokenizer(root["pre_tokenizer"], path: path)
        try self.init(vocab: vocab, merges: merges, addedTokens: added, preTokenizer: pre,
                      normalizer: try Normalizer.parse(root["normalizer"], path: path),
                      postProcessor: try PostProcessor.parse(root["post_processor"], path: path),
                      ignoreMerges: model["ignore_merges"] as? Bool ?? false, source: path)
    }

    /// Token ids index tables as long as the largest id: anything negative or past 2²⁴ (64× the
    /// largest vocabularies in use) is a broken file, refused before any table is sized by it.
    static let maxID = 1 << 24
    static func checkedID(_ id: Int, of what: String, path: String) throws -> Int32 {
        guard id >= 0 && id < maxID else { throw TokenizerError.invalid(path: path, reason: "\(what) has id \(id), outside 0..<\(maxID)") }
        return Int32(id)
    }

    static let gpt2Pattern = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
    /// Llama 3's split pattern; Qwen2's is the same with \\p{N} in place of \\p{N}{1,3}.
    static let llama3Pattern = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
    static let qwen2Pattern = llama3Pattern.replacingOccurrences(of: "\\p{N}{1,3}", with: "\\p{N}")

    static func parsePreTokenizer(_ json: Any?, path: String) throws -> PreTokenizer {
        guard let obj = json as? [String: Any], let type = obj["type"] as? String else {
            throw TokenizerError.invalid(path: path, reason: "pre_tokenizer is missing (byte-level BPE needs ByteLevel)")
        }
        switch type {
        case "ByteLevel":
            return .byteLevel(addPrefixSpace: obj["add_prefix_space"] as? Bool ?? true, useRegex: obj["use_regex"] as? Bool ?? true)
        case "Digits":
            return .digits(individual: obj["individual_digits"] as? Bool ?? false)
        case "Sequence":
            return .sequence(try (obj["pretokenizers"] as? [Any] ?? []).map { try parsePreTokenizer($0, path: path) })
        case "Split":
            let pattern = (obj["pattern"] as? [String: Any])?["Regex"] as? String
            guard obj["behavior"] as? String ?? "Isolated" == "Isolated", obj["invert"] as? Bool ?? false == false else {
                throw TokenizerError.invalid(path: path, reason: "Split supports behavior Isolated without invert")
            }
            if pattern == gpt2Pattern { return .gpt2Split }
            if pattern == llama3Pattern { return .llama3Split(maxDigits: 3) }
            if pattern == qwen2Pattern { return .llama3Split(maxDigits: 1) }
            throw TokenizerError.invalid(path: path, reason: "unsupported Split pattern \(pattern ?? "?")")
        default:
            throw TokenizerError.invalid(path: path, reason: "unsupported pre_tokenizer type \(type)")
        }
    }

    /// Token ids of `text`; added tokens are recognised anywhere in it. Uses the tokenizer's own
    /// word cache, so one tokenizer must not encode on several threads at once: give each thread
    /// its own cache with `encode(_:cache:)`.
    public func encode(_ text: String) -> [Int32] { encode(text, cache: &cache) }

    /// As `tokenizers`' encode(text, add_special_tokens=…): the post-processor's tokens (Llama 3's
    /// BOS, for example) around the text's ids when asked for.
    public func encode(_ text: String, addSpecialTokens: Bool) -> [Int32] {
        let ids = encode(text, cache: &cache)
        return addSpecialTokens ? postProcessor?.apply(ids) ?? ids : ids
    }

    /// Word cache for `encode(_:cache:)`: byte-level word -> ids.
    public typealias WordCache = [String: [Int32]]

    public func encode(_ text: String, cache: inout WordCache) -> [Int32] {
        var out: [Int32] = []
        let scalars = Array(text.unicodeScalars)
        var segment: [Unicode.Scalar] = []
        var i = 0
        func flush() { if !segment.isEmpty { encodeOrdinary(segment, into: &out, cache: &cache); segment.removeAll() } }
        outer: while i < scalars.count {
            for t in addedTokens where matches(t.content, scalars, at: i) {
                if t.lstrip { while let last = segment.last, PreTokenizer.isSpace(last) { segment.removeLast() } }
                flush()
                out.append(t.id)
                i += t.content.unicodeScalars.count
                if t.rstrip { while i < scalars.count && PreTokenizer.isSpace(scalars[i]) { i += 1 } }
                continue outer
            }
            segment.append(scalars[i]); i += 1
        }
        flush()
        return out
    }

    private func matches(_ content: String, _ s: [Unicode.Scalar], at i: Int) -> Bool {
        var k = i
        for u in content.unicodeScalars { if k >= s.count || s[k] != u { return false }; k += 1 }
        return !content.isEmpty
    }

    private func encodeOrdinary(_ raw: [Unicode.Scalar], into out: inout [Int32], cache: inout WordCache) {
        let byteLevel = preTokenizer.isByteLevel
        var text = raw
        if let normalizer {
            var v = String.UnicodeScalarView(); v.append(contentsOf: raw)
            text = Array(normalizer.apply(String(v)).unicodeScalars)
        }
        for piece in preTokenizer.split([text]) where !piece.isEmpty {
            var s = String.UnicodeScalarView(); s.append(contentsOf: piece)
            let word = byteLevel ? ByteLevel.encode(String(s).utf8) : String(s)
            if let hit = cache[word] { out += hit; continue }
            let ids = bpe(word)
            if cache.count < 100_000 { cache[word] = ids }
            out += ids
        }
    }

    /// Merges the lowest-ranked adjacent pair (leftmost on ties) until none applies.
    func bpe(_ word: String) -> [Int32] {
        if ignoreMerges, let id = vocab[word] { return [id] }
        var symbols: [Int32] = word.unicodeScalars.compactMap { vocab[String($0)] }
        while symbols.count > 1 {
            var best: (rank: Int32, at: Int, id: Int32)? = nil
            for j in 0..<(symbols.count - 1) {
                let key = UInt64(UInt32(symbols[j])) << 32 | UInt64(UInt32(symbols[j + 1]))
                if let m = merges[key], best == nil || m.rank < best!.rank { best = (m.rank, j, m.id) }
            }
            guard let b = best else { break }
            symbols[b.at] = b.id
            symbols.remove(at: b.at + 1)
        }
        return symbols
    }

    /// The UTF-8 bytes one token stands for (a byte-level token may hold part of a character).
    public func bytes(of id: Int32) -> [UInt8] {
        if let a = addedTokens.first(where: { $0.id == id }) { return Array(a.content.utf8) }
        guard id >= 0, Int(id) < idToToken.count else { return [] }
        let t = idToToken[Int(id)]
        if preTokenizer.isByteLevel, let b = ByteLevel.decode(t) { return b }
        return Array(t.utf8)
    }

    /// Text of `ids`: byte-level tokens back to bytes, decoded as UTF-8 together so a character
    /// split across tokens comes back whole (invalid sequences become U+FFFD).
    public func decode(_ ids: [Int32]) -> String {
        var out = "", bytes: [UInt8] = []
        let specials = Dictionary(addedTokens.map { ($0.id, $0.content) }, uniquingKeysWith: { a, _ in a })
        func flush() { if !bytes.isEmpty { out += String(decoding: bytes, as: UTF8.self); bytes.removeAll() } }
        for id in ids {
            if let s = specials[id] { flush(); out += s; continue }
            guard id >= 0, Int(id) < idToToken.count else { flush(); out += "\u{FFFD}"; continue }
            let t = idToToken[Int(id)]
            if preTokenizer.isByteLevel, let b = ByteLevel.decode(t) { bytes += b } else { flush(); out += t }
        }
        flush()
        return out
    }
}
