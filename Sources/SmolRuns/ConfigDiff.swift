import Foundation

/// Differences between two runs' configs, key by key ("optimizer.lr": (a, b)), on the flattened
/// JSON of their effective configs; keys present in only one side show as absent on the other.
public enum ConfigDiff {
    public struct Change: Codable, Sendable, Equatable {
        public var key: String
        public var a: String?
        public var b: String?
    }

    public static func diff(_ a: String, _ b: String) throws -> [Change] {
        let fa = try flatten(json: a), fb = try flatten(json: b)
        return Set(fa.keys).union(fb.keys).sorted().compactMap { k in fa[k] == fb[k] ? nil : Change(key: k, a: fa[k], b: fb[k]) }
    }

    /// "section.key" → the value as text; list items are indexed ("data.train[0]").
    public static func flatten(json: String) throws -> [String: String] {
        guard let value = try? JSONDecoder().decode(JSONValue.self, from: Data(json.utf8)) else {
            throw RunStoreError("a stored config is not valid JSON")
        }
        var out: [String: String] = [:]
        func walk(_ v: JSONValue, _ path: String) {
            switch v {
            case .object(let d): for (k, x) in d { walk(x, path.isEmpty ? k : path + "." + k) }
            case .array(let l):
                if l.isEmpty { out[path] = "[]" }
                for (i, x) in l.enumerated() { walk(x, "\(path)[\(i)]") }
            case .string(let s): out[path] = s
            case .number(let n): out[path] = n == n.rounded() && abs(n) < 1e15 ? String(Int64(n)) : "\(n)"
            case .bool(let b): out[path] = b ? "true" : "false"
            case .null: out[path] = "null"
            }
        }
        walk(value, "")
        return out
    }
}

/// Any JSON value (configs are read back generically to be compared key by key).
enum JSONValue: Decodable {
    case object([String: JSONValue]), array([JSONValue]), string(String), number(Double), bool(Bool), null
    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Double.self) { self = .number(n) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }
}
