import Foundation

/// One top-level string field of a JSONL record, read without building the record's objects: a
/// validating scan (RFC 8259: strings with their escapes and surrogate pairs, numbers, literals,
/// nesting to 512 levels) that decodes only the field's value. Foundation's JSONSerialization
/// builds every value as an Objective-C object and bridges the text back, which cost a tenth of
/// `smol data prepare`'s time. As Python's `json`: a duplicated key's last value counts; unlike
/// it, NaN and Infinity are malformed, and so is an escaped lone surrogate (no string holds one).
public enum JSONTextField {
    public enum Outcome: Equatable {
        case text(String)
        /// The field exists and is not a string.
        case notString
        /// The record is valid JSON but no object with the field (an array, or the key absent).
        case missing
        case malformed
    }

    struct Malformed: Error {}

    /// `bytes` must be valid UTF-8 (the caller checks it first, to name that reason).
    public static func extract(_ bytes: [UInt8], field: String) -> Outcome {
        let key = Array(field.utf8)
        return bytes.withUnsafeBufferPointer { b in
            var p = Parser(b: b)
            do {
                if b.count >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF { p.i = 3 }   // a UTF-8 BOM
                p.skipSpace()
                var outcome = Outcome.missing
                switch p.peek() {
                case UInt8(ascii: "{"): outcome = try p.object(lookingFor: key)
                case UInt8(ascii: "["): try p.value(depth: 0)
                default: throw Malformed()   // a bare string, number or literal is no JSONL record
                }
                p.skipSpace()
                return p.i == b.count ? outcome : .malformed
            } catch { return .malformed }
        }
    }

    struct Parser {
        let b: UnsafeBufferPointer<UInt8>
        var i = 0

        func peek() -> UInt8? { i < b.count ? b[i] : nil }

        mutating func skipSpace() {
            while i < b.count, b[i] == 0x20 || b[i] == 0x0A || b[i] == 0x0D || b[i] == 0x09 { i += 1 }
        }

        mutating func expect(_ c: UInt8) throws {
            guard i < b.count, b[i] == c else { throw Malformed() }
            i += 1
        }

        /// The top-level object: every member checked, the last value under `key` kept.
        mutating func object(lookingFor key: [UInt8]) throws -> Outcome {
            try expect(UInt8(ascii: "{"))
            skipSpace()
            var outcome = Outcome.missing
            if peek() == UInt8(ascii: "}") { i += 1; return outcome }
            while true {
                skipSpace()
                let name = try string(decode: true)!
                skipSpace()
                try expect(UInt8(ascii: ":"))
                skipSpace()
                if name.elementsEqual(key) {
                    if peek() == UInt8(ascii: "\"") { outcome = .text(String(decoding: try string(decode: true)!, as: UTF8.self)) }
                    else { try value(depth: 1); outcome = .notString }
                } else {
                    try value(depth: 1)
                }
                skipSpace()
                guard let c = peek() else { throw Malformed() }
                i += 1
                if c == UInt8(ascii: "}") { return outcome }
                guard c == UInt8(ascii: ",") else { throw Malformed() }
            }
        }

        /// Any value, checked and passed over.
        mutating func value(depth: Int) throws {
            guard depth < 512, let c = peek() else { throw Malformed() }
            switch c {
            case UInt8(ascii: "\""): _ = try string(decode: false)
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                let close = c == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: "]")
                i += 1
                skipSpace()
                if peek() == close { i += 1; return }
                while true {
                    skipSpace()
                    if close == UInt8(ascii: "}") {
                        _ = try string(decode: false)
                        skipSpace()
                        try expect(UInt8(ascii: ":"))
                        skipSpace()
                    }
                    try value(depth: depth + 1)
                    skipSpace()
                    guard let d = peek() else { throw Malformed() }
                    i += 1
                    if d == close { return }
                    guard d == UInt8(ascii: ",") else { throw Malformed() }
                }
            case UInt8(ascii: "t"): try literal("true")
            case UInt8(ascii: "f"): try literal("false")
            case UInt8(ascii: "n"): try literal("null")
            default: try number()
            }
        }

        mutating func literal(_ word: StaticString) throws {
            let n = word.utf8CodeUnitCount
            guard i + n <= b.count, memcmp(b.baseAddress! + i, word.utf8Start, n) == 0 else { throw Malformed() }
            i += n
        }

        /// -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
        mutating func number() throws {
            func digits() throws {
                let start = i
                while i < b.count, b[i] >= 0x30 && b[i] <= 0x39 { i += 1 }
                if i == start { throw Malformed() }
            }
            if peek() == UInt8(ascii: "-") { i += 1 }
            if peek() == UInt8(ascii: "0") { i += 1 } else { try digits() }
            if peek() == UInt8(ascii: ".") { i += 1; try digits() }
            if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
                i += 1
                if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") { i += 1 }
                try digits()
            }
        }

        static func hex(_ c: UInt8) -> UInt32? {
            switch c {
            case 0x30...0x39: return UInt32(c - 0x30)
            case 0x41...0x46: return UInt32(c - 0x41 + 10)
            case 0x61...0x66: return UInt32(c - 0x61 + 10)
            default: return nil
            }
        }

        mutating func hex4() throws -> UInt32 {
            guard i + 4 <= b.count else { throw Malformed() }
            var v: UInt32 = 0
            for k in 0..<4 { guard let h = Parser.hex(b[i + k]) else { throw Malformed() }; v = v << 4 | h }
            i += 4
            return v
        }

        /// A string at `i` (its UTF-8 already valid); its decoded bytes when `decode`.
        mutating func string(decode: Bool) throws -> [UInt8]? {
            try expect(UInt8(ascii: "\""))
            let start = i
            // The common case: no escape, straight to the closing quote.
            while i < b.count, b[i] != 0x22, b[i] != 0x5C, b[i] >= 0x20 { i += 1 }
            guard i < b.count, b[i] >= 0x20 else { throw Malformed() }   // unterminated, or a raw control character
            if b[i] == 0x22 {
                i += 1
                return decode ? Array(b[start..<(i - 1)]) : nil
            }
            var out: [UInt8] = decode ? Array(b[start..<i]) : []
            while true {
                guard i < b.count else { throw Malformed() }
                let c = b[i]
                if c == 0x22 { i += 1; return decode ? out : nil }
                if c < 0x20 { throw Malformed() }
                if c != 0x5C { if decode { out.append(c) }; i += 1; continue }
                i += 1
                guard i < b.count else { throw Malformed() }
                let e = b[i]
                i += 1
                var scalar: UInt32
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): scalar = UInt32(e)
                case UInt8(ascii: "b"): scalar = 0x08
                case UInt8(ascii: "f"): scalar = 0x0C
                case UInt8(ascii: "n"): scalar = 0x0A
                case UInt8(ascii: "r"): scalar = 0x0D
                case UInt8(ascii: "t"): scalar = 0x09
                case UInt8(ascii: "u"):
                    scalar = try hex4()
                    if (0xDC00...0xDFFF).contains(scalar) { throw Malformed() }          // a lone low surrogate
                    if (0xD800...0xDBFF).contains(scalar) {                              // needs its low half
                        guard i + 2 <= b.count, b[i] == 0x5C, b[i + 1] == UInt8(ascii: "u") else { throw Malformed() }
                        i += 2
                        let low = try hex4()
                        guard (0xDC00...0xDFFF).contains(low) else { throw Malformed() }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    }
                default: throw Malformed()
                }
                if decode { out.append(contentsOf: Unicode.Scalar(scalar)!.utf8) }
            }
        }
    }
}
