import Foundation

extension BPETokenizer {
    /// The UTF-8 byte offset where each of `ids` begins in `text` (plus one final entry, the text's
    /// length), or nil when the tokens' bytes do not spell `text` exactly (a normaliser, a
    /// non-byte-level vocabulary or a stripped added token). SFT loss masks are located on these
    /// boundaries rather than by re-encoding prefixes, which BPE merges make inexact.
    public func byteOffsets(of ids: [Int32], in text: String) -> [Int]? {
        guard preTokenizer.isByteLevel, normalizer == nil else { return nil }
        let specials = Dictionary(addedTokens.map { ($0.id, Array($0.content.utf8)) }, uniquingKeysWith: { a, _ in a })
        var offsets = [Int](), at = 0
        offsets.reserveCapacity(ids.count + 1)
        let bytes = Array(text.utf8)
        for id in ids {
            offsets.append(at)
            let piece: [UInt8]
            if let s = specials[id] { piece = s }
            else if id >= 0, Int(id) < idToToken.count, let b = ByteLevel.decode(idToToken[Int(id)]) { piece = b }
            else { return nil }
            guard at + piece.count <= bytes.count, bytes[at..<(at + piece.count)].elementsEqual(piece) else { return nil }
            at += piece.count
        }
        guard at == text.utf8.count else { return nil }
        offsets.append(at)
        return offsets
    }
}
