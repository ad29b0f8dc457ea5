import Foundation

/// JSON in and out with Python's conventions: objects keep their key order (json.loads does), and
/// `dumps` writes what Python's json.dumps writes (", " and ": " separators, or "," with an
/// indent; ensure_ascii off as Hugging Face's chat templates use it).
public enum JinjaJSON {
    public struct ParseError: Error, CustomStringConvertible {
        public let offset: Int, reason: String
        public var description: String { "invalid JSON at byte \(offset): \(reason)" }
    }

    public static func parse(_ text: String) throws -> JinjaValue {
        var p = Parser(bytes: Array(text.utf8))
        p.skipSpace()
        let v = try p.value(depth: 0)
        p.skipSpace()
        guard p.i == p.bytes.count else { throw ParseError(offset: p.i, reason: "trailing characters") }
        return v
    }

    struct Parser {
        let bytes: [UInt8]
        var i = 0
        mutating func skipSpace() { while i < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[i]) { i += 1 } }
        func fail(_ r: String) -> ParseError { ParseError(offset: i, reason: r) }

        mutating func value(depth: Int) throws -> JinjaValue {
            guard depth < 512 else { throw fail("nested too deeply") }
            guard i < bytes.count else { throw fail("unexpected end") }
            switch bytes[i] {
            case UInt8(ascii: "{"):
                i += 1; skipSpace()
                var o = JinjaObject()
                if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .object(o) }
                while true {
                    skipSpace()
                    guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
                    let k = try string()
                    skipSpace()
                    guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                    i += 1; skipSpace()
                    o[k] = try value(depth: depth + 1)
                    skipSpace()
                    guard i < bytes.count else { throw fail("unexpected end in object") }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    if bytes[i] == UInt8(ascii: "}") { i += 1; return .object(o) }
                    throw fail("expected ',' or '}'")
                }
            case UInt8(ascii: "["):
                i += 1; skipSpace()
                var a: [JinjaValue] = []
                if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .array(a) }
                while true {
                    skipSpace()
                    a.append(try value(depth: depth + 1))
                    skipSpace()
                    guard i < bytes.count else { throw fail("unexpected end in array") }
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    if bytes[i] == UInt8(ascii: "]") { i += 1; return .array(a) }
                    throw fail("expected ',' or ']'")
                }
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): try literal("true"); return .bool(true)
            case UInt8(ascii: "f"): try literal("false"); return .bool(false)
            case UInt8(ascii: "n"): try literal("null"); return .none
            default: return try number()
            }
        }

        mutating func literal(_ word: String) throws {
            let w = Array(word.utf8)
            guard i + w.count <= bytes.count, Array(bytes[i..<(i + w.count)]) == w else { throw fail("unexpected character") }
            i += w.count
        }

        mutating func number() throws -> JinjaValue {
            let start = i
            var isFloat = false
            while i < bytes.count, let c = Optional(bytes[i]), (c >= 0x30 && c <= 0x39) || [0x2D, 0x2B, 0x2E, 0x65, 0x45].contains(c) {
                if [0x2E, 0x65, 0x45].contains(c) { isFloat = true }
                i += 1
            }
            let s = String(decoding: bytes[start..<i], as: UTF8.self)
            if !isFloat, let v = Int(s) { return .int(v) }
            if let d = Double(s), !s.isEmpty { return .double(d) }
            i = start
            throw fail("unexpected character")
        }

        mutating func string() throws -> String {
            i += 1
            var out = [UInt8]()
            while i < bytes.count {
                let c = bytes[i]
                if c == UInt8(ascii: "\"") { i += 1; return String(decoding: out, as: UTF8.self) }
                if c == UInt8(ascii: "\\") {
                    guard i + 1 < bytes.count else { break }
                    let e = bytes[i + 1]; i += 2
                    switch e {
                    case UInt8(ascii: "n"): out.append(0x0A)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "r"): out.append(0x0D)
                    case UInt8(ascii: "b"): out.append(0x08)
                    case UInt8(ascii: "f"): out.append(0x0C)
                    case UInt8(ascii: "u"):
                        var code = try hex4()
                        if code >= 0xD800 && code < 0xDC00, i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u") {
                            i += 2
                            let low = try hex4()
                            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                        }
                        out += Array(String(Unicode.Scalar(code).map(Character.init) ?? "\u{FFFD}").utf8)
                    default: out.append(e)
                    }
                    continue
                }
                out.append(c); i += 1
            }
            throw fail("unterminated string")
        }

        mutating func hex4() throws -> UInt32 {
            guard i + 4 <= bytes.count, let v = UInt32(String(decoding: bytes[i..<(i + 4)], as: UTF8.self), radix: 16) else { throw fail("bad \\u escape") }
            i += 4
            return v
        }
    }

    /// Python's json.dumps(value, ensure_ascii=..., indent=..., separators=..., sort_keys=...).
    public static func dumps(_ v: JinjaValue, indent: Int? = nil, ensureASCII: Bool = false, sortKeys: Bool = false,
                             separators: (String, String)? = nil) throws -> String {
        let (itemSep, keySep) = separators ?? (indent == nil ? (", ", ": ") : (",", ": "))
        var out = ""
        func str(_ s: String) {
            out += "\""
            for u in s.unicodeScalars {
                switch u {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                case "\u{08}": out += "\\b"
                case "\u{0C}": out += "\\f"
                default:
                    if u.value < 0x20 || (ensureASCII && u.value > 0x7E) {
                        if u.value > 0xFFFF {
                            let x = u.value - 0x10000
                            out += String(format: "\\u%04x\\u%04x", 0xD800 + (x >> 10), 0xDC00 + (x & 0x3FF))
                        } else { out += String(format: "\\u%04x", u.value) }
                    } else { out.unicodeScalars.append(u) }
                }
            }
            out += "\""
        }
        func write(_ v: JinjaValue, _ level: Int) throws {
            func newline(_ l: Int) { if let n = indent { out += "\n" + String(repeating: " ", count: n * l) } }
            switch v {
            case .none, .undefined: out += "null"
            case let .bool(b): out += b ? "true" : "false"
            case let .int(i): out += String(i)
            case let .double(d):
                if d.isNaN { out += "NaN" } else if d.isInfinite { out += d > 0 ? "Infinity" : "-Infinity" }
                else { out += JinjaValue.pythonFloat(d) }
            case let .string(s): str(s)
            case let .array(a):
                if a.isEmpty { out += "[]"; return }
                out += "["
                for (k, e) in a.enumerated() { if k > 0 { out += itemSep }; newline(level + 1); try write(e, level + 1) }
                newline(level); out += "]"
            case let .object(o):
                if o.count == 0 { out += "{}"; return }
                out += "{"
                let pairs = sortKeys ? o.pairs.sorted { $0.0 < $1.0 } : o.pairs
                for (k, (key, e)) in pairs.enumerated() {
                    if k > 0 { out += itemSep }
                    newline(level + 1); str(key); out += keySep; try write(e, level + 1)
                }
                newline(level); out += "}"
            case let .namespace(n): try write(.object(n.attributes), level)
            case .callable: throw JinjaError.runtime("Object of type function is not JSON serializable")
            }
        }
        try write(v, 0)
        return out
    }
}
