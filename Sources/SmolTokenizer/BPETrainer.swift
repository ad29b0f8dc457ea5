import Foundation

/// Trains a byte-level BPE the classic way: pre-tokenise, count words, then repeatedly merge the
/// most frequent adjacent pair (ties: the pair whose merged string sorts first), updating only the
/// words that contain it. The result is a Hugging Face tokenizer.json.
public struct BPETrainer {
    public var vocabSize: Int
    public var specialTokens: [String]
    public var minFrequency: Int = 2
    public var preTokenizer: PreTokenizer = .sequence([.digits(individual: true), .byteLevel(addPrefixSpace: false, useRegex: true)])

    public init(vocabSize: Int, specialTokens: [String] = ["<|endoftext|>"]) {
        self.vocabSize = vocabSize; self.specialTokens = specialTokens
    }

    public struct Result {
        public let vocab: [String]            // id -> token; special tokens first, then the 256 bytes
        public let merges: [(String, String)]
        public let specialCount: Int
    }

    public func train(texts: [String]) -> Result {
        // 1. Word counts over byte-level pieces.
        var counts: [String: Int] = [:]
        let byteLevel = preTokenizer.isByteLevel
        for text in texts {
            for piece in preTokenizer.split([Array(text.unicodeScalars)]) where !piece.isEmpty {
                var s = String.UnicodeScalarView(); s.append(contentsOf: piece)
                counts[byteLevel ? ByteLevel.encode(String(s).utf8) : String(s), default: 0] += 1
            }
        }
        // 2. Initial symbols: every byte, so any input can be encoded.
        var vocab = specialTokens
        var index: [String: Int32] = [:]
        for (i, t) in vocab.enumerated() { index[t] = Int32(i) }
        for u in ByteLevel.byteToScalar { let t = String(u); if index[t] == nil { index[t] = Int32(vocab.count); vocab.append(t) } }
        let words = counts.keys.sorted()
        var symbols: [[Int32]] = words.map { w in w.unicodeScalars.map { index[String($0)]! } }
        let freq = words.map { counts[$0]! }

        // 3. Pair counts and where each pair occurs.
        func key(_ a: Int32, _ b: Int32) -> UInt64 { UInt64(UInt32(a)) << 32 | UInt64(UInt32(b)) }
        var pairCount: [UInt64: Int] = [:]
        var pairWords: [UInt64: Set<Int>] = [:]
        for (w, s) in symbols.enumerated() where s.count > 1 {
            for j in 0..<(s.count - 1) {
                let k = key(s[j], s[j + 1]); pairCount[k, default: 0] += freq[w]; pairWords[k, default: []].insert(w)
            }
        }
        var merges: [(String, String)] = []
        while vocab.count < vocabSize {
            // The most frequent pair; ties broken by the merged string, then the left part.
            var best: (UInt64, Int)? = nil
            for (k, c) in pairCount where c >= max(minFrequency, 1) {
                if let b = best {
                    if c < b.1 { continue }
                    if c == b.1 {
                        let (l1, r1) = (vocab[Int(k >> 32)], vocab[Int(k & 0xFFFF_FFFF)])
                        let (l2, r2) = (vocab[Int(b.0 >> 32)], vocab[Int(b.0 & 0xFFFF_FFFF)])
                        if (l1 + r1, l1) >= (l2 + r2, l2) { continue }
                    }
                }
                best = (k, c)
            }
            guard let (bestKey, _) = best else { break }
            let a = Int32(bestKey >> 32), b = Int32(bestKey & 0xFFFF_FFFF)
            let merged = vocab[Int(a)] + vocab[Int(b)]
            let newId: Int32
            if let existing = index[merged] { newId = existing } else { newId = Int32(vocab.count); vocab.append(merged); index[merged] = newId }
            merges.append((vocab[Int(a)], vocab[Int(b)]))
            for w in pairWords[bestKey] ?? [] {
                let s = symbols[w], f = freq[w]
                // remove this word's old pairs, merge left to right, add its new pairs
                for j in 0..<(s.count - 1) { let k = key(s[j], s[j + 1]); pairCount[k, default: 0] -= f; if pairCount[k] == 0 { pairCount[k] = nil } }
                var out: [Int32] = []
                var j = 0
                while j < s.count {
                    if j + 1 < s.count && s[j] == a && s[j + 1] == b { out.append(newId); j += 2 } else { out.append(s[j]); j += 1 }
                }
                symbols[w] = out
                if out.count > 1 {
                    for j in 0..<(out.count - 1) { let k = key(out[j], out[j + 1]); pairCount[k, default: 0] += f; pairWords[k, default: []].insert(w) }
                }
            }
            pairCount[bestKey] = nil
            pairWords[bestKey] = nil
        }
        return Result(vocab: vocab, merges: merges, specialCount: specialTokens.count)
    }

    /// tokenizer.json for `result`, loadable by Hugging Face `tokenizers` and by BPETokenizer(path:).
    public func tokenizerJSON(_ r: Result) throws -> Data {
        var vocab: [String: Int32] = [:]
        for (i, t) in r.vocab.enumerated() { vocab[t] = Int32(i) }
        let added = (0..<r.specialCount).map { AddedToken(id: Int32($0), content: r.vocab[$0], special: true, lstrip: false, rstrip: false) }
        return try TokenizerJSON.data(vocab: vocab, merges: r.merges, addedTokens: added, preTokenizer: preTokenizer)
    }
}
