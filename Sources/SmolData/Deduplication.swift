import Crypto
import Foundation
import SmolTensor

/// Exact and near-duplicate removal as datatrove's MinHash deduplication does it: documents are
/// normalised (lower case, punctuation to spaces, white space collapsed), cut into word n-grams,
/// each n-gram hashed (the first 8 bytes of its SHA-1), and the signature is the minimum over the
/// n-grams of `hashes` permutations ((a·h + b) mod 2⁶¹−1, low 32 bits). Locality-sensitive hashing
/// puts two documents in one cluster when all the values of any one band of the signature agree;
/// the first document of each cluster (in input order) is kept. Exact duplicates (the same text
/// byte for byte) are removed first, by SHA-256.
public struct MinHashDeduplicator {
    public struct Parameters: Codable, Sendable, Equatable {
        public var ngram = 5
        public var bands = 14
        public var rowsPerBand = 8
        public var seed: UInt64 = 1
        public var hashes: Int { bands * rowsPerBand }
        public init(ngram: Int = 5, bands: Int = 14, rowsPerBand: Int = 8, seed: UInt64 = 1) {
            self.ngram = ngram; self.bands = bands; self.rowsPerBand = rowsPerBand; self.seed = seed
        }
        enum CodingKeys: String, CodingKey { case ngram, bands, rowsPerBand = "rows_per_band", seed }
    }

    public enum Verdict: Equatable, Sendable {
        case kept
        /// The same bytes as document `of` (its index in input order).
        case exactDuplicate(of: Int)
        /// In one LSH cluster with document `of`, the cluster's first.
        case nearDuplicate(of: Int)
    }

    static let prime: UInt64 = (1 << 61) - 1
    public let parameters: Parameters
    let a: [UInt64], b: [UInt64]

    public init(_ parameters: Parameters = Parameters()) {
        self.parameters = parameters
        var rng = RandomStream(seed: parameters.seed, purpose: "minhash")
        var a: [UInt64] = [], b: [UInt64] = []
        for _ in 0..<parameters.hashes {
            a.append(1 + UInt64(rng.nextInt(below: Int(MinHashDeduplicator.prime - 1))))
            b.append(UInt64(rng.nextInt(below: Int(MinHashDeduplicator.prime))))
        }
        self.a = a; self.b = b
    }

    /// Lower case, every character that is not a letter or digit to a space, white space collapsed.
    public static func normalize(_ text: String) -> String {
        var out = ""
        var space = false
        for ch in text.lowercased() {
            if ch.isLetter || ch.isNumber { out.append(ch); space = false }
            else if !space && !out.isEmpty { out.append(" "); space = true }
        }
        if out.last == " " { out.removeLast() }
        return out
    }

    /// Word n-grams of the normalised text (the whole text when it has fewer words).
    public func shingles(_ text: String) -> [String] {
        let words = MinHashDeduplicator.normalize(text).split(separator: " ").map(String.init)
        let n = parameters.ngram
        guard words.count >= n else { return words.isEmpty ? [] : [words.joined(separator: " ")] }
        return (0...(words.count - n)).map { words[$0..<($0 + n)].joined(separator: " ") }
    }

    /// The first 8 bytes of SHA-1, little-endian.
    static func shingleHash(_ s: String) -> UInt64 {
        let digest = Array(Insecure.SHA1.hash(data: Data(s.utf8)))
        var h: UInt64 = 0
        for i in 0..<8 { h |= UInt64(digest[i]) << (8 * UInt64(i)) }
        return h
    }

    /// (x · y) mod 2⁶¹ − 1 without overflow.
    static func mulmod(_ x: UInt64, _ y: UInt64) -> UInt64 {
        let (hi, lo) = x.multipliedFullWidth(by: y)
        // 2⁶¹ ≡ 1: fold the 122-bit product into 61-bit pieces.
        let low = lo & prime, mid = (lo >> 61) | (hi << 3)
        var r = low + (mid & prime) + (mid >> 61)
        while r >= prime { r -= prime }
        return r
    }

    public func signature(_ text: String) -> [UInt32] {
        let hashes = shingles(text).map { MinHashDeduplicator.shingleHash($0) % MinHashDeduplicator.prime }
        var sig = [UInt32](repeating: .max, count: parameters.hashes)
        for h in hashes {
            for k in 0..<parameters.hashes {
                var v = MinHashDeduplicator.mulmod(a[k], h) + b[k]
                if v >= MinHashDeduplicator.prime { v -= MinHashDeduplicator.prime }
                let low = UInt32(truncatingIfNeeded: v)
                if low < sig[k] { sig[k] = low }
            }
        }
        return sig
    }

    /// A verdict for each document, in order.
    public func deduplicate(_ texts: [String]) -> [Verdict] {
        var index = Index(self)
        for t in texts { index.add(t) }
        return index.verdicts()
    }

    /// Documents added one at a time, in input order, keeping per document only its exact-match
    /// digest, its band keys and its cluster link (about 0.4 KB with 14 bands), never its text, so
    /// a corpus larger than memory can be deduplicated in two passes (add every document, then
    /// stream the input again with the verdicts).
    public struct Index {
        let dedup: MinHashDeduplicator
        var exact: [SHA256Digest: Int] = [:]
        var exactOf: [Int] = []          // the first document with the same bytes, or -1
        var parent: [Int] = []
        var buckets: [[UInt64: Int]]
        public var count: Int { parent.count }

        public init(_ dedup: MinHashDeduplicator) {
            self.dedup = dedup
            buckets = [[UInt64: Int]](repeating: [:], count: dedup.parameters.bands)
        }

        mutating func find(_ x: Int) -> Int {
            var x = x
            while parent[x] != x { parent[x] = parent[parent[x]]; x = parent[x] }
            return x
        }

        /// A band's values as one 64-bit key (FNV-1a over them; a collision between different
        /// bands has probability about n²/2⁶⁵ over n documents).
        static func bandKey(_ values: ArraySlice<UInt32>) -> UInt64 {
            var h: UInt64 = 0xcbf2_9ce4_8422_2325
            for v in values { h = (h ^ UInt64(v)) &* 0x100_0000_01b3; h = (h ^ (h >> 29)) &* 0xbf58_476d_1ce4_e5b9 }
            return h
        }

        public mutating func add(_ text: String) {
            let i = parent.count
            parent.append(i)
            let digest = SHA256.hash(data: Data(text.utf8))
            if let first = exact[digest] { exactOf.append(first); return }
            exact[digest] = i
            exactOf.append(-1)
            let sig = dedup.signature(text)
            guard sig.first != .max else { return }   // no words: nothing to compare
            let rows = dedup.parameters.rowsPerBand
            for band in 0..<dedup.parameters.bands {
                let key = Index.bandKey(sig[(band * rows)..<((band + 1) * rows)])
                if let other = buckets[band][key] {
                    let (r1, r2) = (find(i), find(other))
                    if r1 != r2 { parent[max(r1, r2)] = min(r1, r2) }   // the earlier document stays the root
                } else { buckets[band][key] = i }
            }
        }

        /// A verdict for every document added, in order.
        public mutating func verdicts() -> [Verdict] {
            (0..<parent.count).map { i in
                if exactOf[i] >= 0 { return .exactDuplicate(of: exactOf[i]) }
                let root = find(i)
                return root != i ? .nearDuplicate(of: root) : .kept
            }
        }
    }
}
