/// GPT-2's byte-to-unicode map: every byte gets a printable character, so byte-level BPE
/// vocabularies are plain strings. Printable Latin-1 bytes map to themselves; the other 68 bytes
/// map to U+0100, U+0101, ... in byte order.
public enum ByteLevel {
    public static let byteToScalar: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            let printable = (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b)
            if printable { table[b] = Unicode.Scalar(UInt32(b))! } else { table[b] = Unicode.Scalar(next)!; next += 1 }
        }
        return table
    }()

    public static let scalarToByte: [UInt32: UInt8] = {
        var map: [UInt32: UInt8] = [:]
        for (b, s) in byteToScalar.enumerated() { map[s.value] = UInt8(b) }
        return map
    }()

    /// The byte-level string of some UTF-8 bytes.
    public static func encode<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        var s = String.UnicodeScalarView()
        for b in bytes { s.append(byteToScalar[Int(b)]) }
        return String(s)
    }

    /// Bytes of a byte-level string; nil if it holds a character outside the map.
    public static func decode(_ s: String) -> [UInt8]? {
        var out: [UInt8] = []
        for u in s.unicodeScalars { guard let b = scalarToByte[u.value] else { return nil }; out.append(b) }
        return out
    }
}
