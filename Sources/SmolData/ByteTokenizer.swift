import Foundation

/// The simplest tokenizer that trains anything: one id per UTF-8 byte (0–255), then special
/// tokens from 256 (by default `<|endoftext|>`, which ends every document).
public struct ByteTokenizer: Sendable {
    public let specialTokens: [String]
    public var vocabSize: Int { 256 + specialTokens.count }
    public var endOfText: Int32 { 256 }

    public init(specialTokens: [String] = ["<|endoftext|>"]) { self.specialTokens = specialTokens }

    public func encode(_ text: String) -> [Int32] { text.utf8.map { Int32($0) } }

    /// Bytes are collected and decoded as UTF-8 together, so a character split over several ids
    /// decodes whole; invalid sequences become U+FFFD.
    public func decode(_ ids: [Int32]) -> String {
        var out = ""
        var bytes: [UInt8] = []
        func flush() { if !bytes.isEmpty { out += String(decoding: bytes, as: UTF8.self); bytes.removeAll() } }
        for id in ids {
            if id >= 0 && id < 256 { bytes.append(UInt8(id)) }
            else { flush(); let s = Int(id) - 256; out += (s >= 0 && s < specialTokens.count) ? specialTokens[s] : "\u{FFFD}" }
        }
        flush()
        return out
    }
}
