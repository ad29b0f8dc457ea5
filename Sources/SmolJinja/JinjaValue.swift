import Foundation

/// A mutable attribute bag (`namespace()`), shared by reference as in Jinja.
public final class JinjaNamespace {
    var attributes: JinjaObject
    init(_ attributes: JinjaObject) { self.attributes = attributes }
}

/// A dict that keeps insertion order, as Python's does (items, tojson and printing depend on it).
public struct JinjaObject: Equatable {
    public private(set) var keys: [String] = []
    private var storage: [String: JinjaValue] = [:]
    public init() {}
    public init(_ pairs: [(String, JinjaValue)]) { for (k, v) in pairs { self[k] = v } }
    public subscript(key: String) -> JinjaValue? {
        get { storage[key] }
        set {
            if storage[key] == nil, newValue != nil { keys.append(key) }
            if newValue == nil { keys.removeAll { $0 == key } }
            storage[key] = newValue
        }
    }
    public var pairs: [(String, JinjaValue)] { keys.map { ($0, storage[$0]!) } }
    public var count: Int { keys.count }
}

/// Values of the template language, with Python's semantics for truth, equality and printing.
public indirect enum JinjaValue: Equatable {
    case undefined(String)
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JinjaValue])
    case object(JinjaObject)
    case namespace(JinjaNamespace)
    case callable(JinjaCallable)

    public static func == (a: JinjaValue, b: JinjaValue) -> Bool {
        switch (a, b) {
        case (.undefined, .undefined), (.none, .none): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.string(x), .string(y)): return PythonString.equal(x, y)
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)): return x == y
        case let (.namespace(x), .namespace(y)): return x === y
        case let (.callable(x), .callable(y)): return x === y
        default:
            if let x = a.number, let y = b.number { return x == y }
            return false
        }
    }

    /// Ints, floats and bools compare as numbers, as in Python.
    var number: Double? {
        switch self {
        case let .int(i): return Double(i)
        case let .double(d): return d
        case let .bool(b): return b ? 1 : 0
        default: return nil
        }
    }

    public var isTruthy: Bool {
        switch self {
        case .undefined, .none: return false
        case let .bool(b): return b
        case let .int(i): return i != 0
        case let .double(d): return d != 0
        case let .string(s): return !s.isEmpty
        case let .array(a): return !a.isEmpty
        case let .object(o): return o.count > 0
        case .namespace, .callable: return true
        }
    }

    public var isDefined: Bool { if case .undefined = self { return false }; return true }

    var typeName: String {
        switch self {
        case .undefined: return "undefined"; case .none: return "NoneType"; case .bool: return "bool"
        case .int: return "int"; case .double: return "float"; case .string: return "str"
        case .array: return "list"; case .object: return "dict"; case .namespace: return "Namespace"
        case .callable: return "function"
        }
    }

    /// str(value) as Python prints it in `{{ }}`.
    public var printed: String {
        switch self {
        case .undefined: return ""
        case let .string(s): return s
        default: return repr
        }
    }

    /// repr(value) as Python writes it (inside printed lists and dicts).
    var repr: String {
        switch self {
        case .undefined: return ""
        case .none: return "None"
        case let .bool(b): return b ? "True" : "False"
        case let .int(i): return String(i)
        case let .double(d): return JinjaValue.pythonFloat(d)
        case let .string(s): return JinjaValue.pythonRepr(s)
        case let .array(a): return "[" + a.map(\.repr).joined(separator: ", ") + "]"
        case let .object(o): return "{" + o.pairs.map { JinjaValue.pythonRepr($0.0) + ": " + $0.1.repr }.joined(separator: ", ") + "}"
        case let .namespace(n): return "<Namespace " + JinjaValue.object(n.attributes).repr + ">"
        case .callable: return "<function>"
        }
    }

    static func pythonFloat(_ d: Double) -> String {
        if d.isNaN { return "nan" }
        if d.isInfinite { return d > 0 ? "inf" : "-inf" }
        if d == d.rounded(), abs(d) < 1e16 { return String(format: "%.1f", d) }
        let s = "\(d)"   // shortest round-trip digits, like Python's repr
        if let e = s.firstIndex(of: "e") {   // Python writes 1e-05, Swift 1e-05 as well; normalise "1.0e-05"
            let mantissa = s[..<e], exponent = Int(s[s.index(after: e)...]) ?? 0
            let m = mantissa.hasSuffix(".0") ? String(mantissa.dropLast(2)) : String(mantissa)
            return m + "e" + (exponent < 0 ? "-" : "+") + String(format: "%02d", abs(exponent))
        }
        return s
    }

    static func pythonRepr(_ s: String) -> String {
        let quote: Character = s.contains("'") && !s.contains("\"") ? "\"" : "'"
        var out = String(quote)
        for ch in s.unicodeScalars {
            switch ch {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if Character(ch) == quote { out += "\\" + String(quote) }
                else if ch.value < 0x20 || ch.value == 0x7F { out += String(format: "\\x%02x", ch.value) }
                else { out.unicodeScalars.append(ch) }
            }
        }
        return out + String(quote)
    }
}

/// A function value: a macro, a builtin such as namespace() or raise_exception(), or a bound method.
public final class JinjaCallable {
    let name: String
    let body: ([JinjaValue], [(String, JinjaValue)]) throws -> JinjaValue
    init(_ name: String, _ body: @escaping ([JinjaValue], [(String, JinjaValue)]) throws -> JinjaValue) {
        self.name = name; self.body = body
    }
}
