import Foundation

/// Globals, filters, tests, operators and the Python methods (str.strip, dict.items, ...) that
/// chat templates call, each with Python's behaviour.
enum Builtins {
    static let globals: [String: JinjaValue] = [
        "namespace": .callable(JinjaCallable("namespace") { args, kwargs in
            var o = JinjaObject()
            if case let .object(initial)? = args.first { for (k, v) in initial.pairs { o[k] = v } }
            for (k, v) in kwargs { o[k] = v }
            return .namespace(JinjaNamespace(o))
        }),
        "raise_exception": .callable(JinjaCallable("raise_exception") { args, _ in
            throw JinjaError.raised(args.first?.printed ?? "error")
        }),
        "strftime_now": .callable(JinjaCallable("strftime_now") { args, _ in
            guard case let .string(format)? = args.first else { throw JinjaError.runtime("strftime_now needs a format string") }
            return .string(strftime(format, Date()))
        }),
        "range": .callable(JinjaCallable("range") { args, _ in
            let n = try args.map { v -> Int in guard case let .int(i) = v else { throw JinjaError.runtime("range() needs integers") }; return i }
            let (start, stop, step) = n.count == 1 ? (0, n[0], 1) : (n[0], n.count > 1 ? n[1] : 0, n.count > 2 ? n[2] : 1)
            guard step != 0 else { throw JinjaError.runtime("range() step must not be zero") }
            return .array(Array(stride(from: start, to: stop, by: step)).map { .int($0) })
        }),
        "dict": .callable(JinjaCallable("dict") { _, kwargs in .object(JinjaObject(kwargs)) }),
    ]

    static func strftime(_ format: String, _ date: Date) -> String {
        var t = time_t(date.timeIntervalSince1970)
        var tmv = tm()
        localtime_r(&t, &tmv)
        var buffer = [Int8](repeating: 0, count: 256)
        let n = Foundation.strftime(&buffer, buffer.count, format, &tmv)
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func iterate(_ v: JinjaValue) throws -> [JinjaValue] {
        switch v {
        case let .array(a): return a
        case let .object(o): return o.keys.map { .string($0) }
        case let .string(s): return s.unicodeScalars.map { .string(String($0)) }
        case .undefined: return []
        default: throw JinjaError.runtime("'\(v.typeName)' object is not iterable")
        }
    }

    static func int(_ v: JinjaValue, _ what: String) throws -> Int {
        switch v {
        case let .int(i): return i
        case let .bool(b): return b ? 1 : 0
        default: throw JinjaError.runtime("\(what) must be an integer, not '\(v.typeName)'")
        }
    }

    // MARK: attributes, subscripts, slices

    static func attribute(_ base: JinjaValue, _ name: String) throws -> JinjaValue {
        switch base {
        case let .undefined(n): throw JinjaError.runtime("'\(n)' is undefined (reading .\(name))")
        case let .object(o):
            if let v = o[name] { return v }
            if let m = dictMethod(o, name) { return m }
            return .undefined(name)
        case let .namespace(ns): return ns.attributes[name] ?? .undefined(name)
        case let .string(s): return stringMethod(s, name) ?? .undefined(name)
        case let .array(a):
            if name == "index" { return .callable(JinjaCallable("index") { args, _ in
                guard let x = args.first, let i = a.firstIndex(of: x) else { throw JinjaError.runtime("value is not in list") }
                return .int(i) }) }
            if name == "count" { return .callable(JinjaCallable("count") { args, _ in .int(a.filter { $0 == args.first }.count) }) }
            if let i = Int(name) { return try item(base, .int(i)) }
            return .undefined(name)
        default: return .undefined(name)
        }
    }

    static func item(_ base: JinjaValue, _ index: JinjaValue) throws -> JinjaValue {
        switch (base, index) {
        case let (.undefined(n), _): throw JinjaError.runtime("'\(n)' is undefined (subscripted)")
        case let (.object(o), .string(k)): return o[k] ?? dictMethod(o, k) ?? .undefined(k)
        case let (.namespace(ns), .string(k)): return ns.attributes[k] ?? .undefined(k)
        case let (.array(a), i) where i.number != nil:
            let n = try int(i, "list index")
            let j = n < 0 ? a.count + n : n
            return j >= 0 && j < a.count ? a[j] : .undefined("[\(n)]")
        case let (.string(s), i) where i.number != nil:
            let chars = PythonString.scalars(s), n = try int(i, "string index")
            let j = n < 0 ? chars.count + n : n
            return j >= 0 && j < chars.count ? .string(String(chars[j])) : .undefined("[\(n)]")
        case let (_, .string(k)): return try attribute(base, k)
        default: return .undefined("[\(index.printed)]")
        }
    }

    /// Python slicing: a[start:stop:step] with negative indices and steps.
    static func slice(_ base: JinjaValue, _ a: JinjaValue?, _ b: JinjaValue?, _ c: JinjaValue?) throws -> JinjaValue {
        func opt(_ v: JinjaValue?) throws -> Int? { guard let v, v != .none else { return nil }; return try int(v, "slice index") }
        let step = try opt(c) ?? 1
        guard step != 0 else { throw JinjaError.runtime("slice step cannot be zero") }
        func indices(_ n: Int) throws -> [Int] {
            func clamp(_ x: Int?, _ def: Int, lo: Int, hi: Int) -> Int {
                guard var x else { return def }
                if x < 0 { x += n }
                return min(max(x, lo), hi)
            }
            if step > 0 {
                let s = clamp(try opt(a), 0, lo: 0, hi: n), e = clamp(try opt(b), n, lo: 0, hi: n)
                return s < e ? Array(stride(from: s, to: e, by: step)) : []
            } else {
                let s = clamp(try opt(a), n - 1, lo: -1, hi: n - 1), e = clamp(try opt(b), -1, lo: -1, hi: n - 1)
                return s > e ? Array(stride(from: s, to: e, by: step)) : []
            }
        }
        switch base {
        case let .array(x): return .array(try indices(x.count).map { x[$0] })
        case let .string(s): let ch = PythonString.scalars(s); return .string(PythonString.string(try indices(ch.count).map { ch[$0] }))
        default: throw JinjaError.runtime("'\(base.typeName)' object is not subscriptable")
        }
    }

    // MARK: methods

    static func dictMethod(_ o: JinjaObject, _ name: String) -> JinjaValue? {
        switch name {
        case "items": return .callable(JinjaCallable("items") { _, _ in .array(o.pairs.map { .array([.string($0.0), $0.1]) }) })
        case "keys": return .callable(JinjaCallable("keys") { _, _ in .array(o.keys.map { .string($0) }) })
        case "values": return .callable(JinjaCallable("values") { _, _ in .array(o.pairs.map(\.1)) })
        case "get": return .callable(JinjaCallable("get") { args, _ in
            guard case let .string(k)? = args.first else { return args.count > 1 ? args[1] : .none }
            return o[k] ?? (args.count > 1 ? args[1] : .none) })
        default: return nil
        }
    }

    /// A Jinja string argument, or nil for a missing or non-string one (None, say).
    static func optionalString(_ v: JinjaValue?) -> String? { if case let .string(s)? = v { return s }; return nil }

    static func strip(_ s: String, _ chars: JinjaValue?, leading: Bool, trailing: Bool) -> String {
        PythonString.strip(s, chars: optionalString(chars), leading: leading, trailing: trailing)
    }

    static func stringMethod(_ s: String, _ name: String) -> JinjaValue? {
        func method(_ body: @escaping ([JinjaValue], [(String, JinjaValue)]) throws -> JinjaValue) -> JinjaValue {
            .callable(JinjaCallable(name, body))
        }
        switch name {
        case "strip": return method { a, _ in .string(strip(s, a.first, leading: true, trailing: true)) }
        case "lstrip": return method { a, _ in .string(strip(s, a.first, leading: true, trailing: false)) }
        case "rstrip": return method { a, _ in .string(strip(s, a.first, leading: false, trailing: true)) }
        case "upper": return method { _, _ in .string(s.uppercased()) }
        case "lower": return method { _, _ in .string(s.lowercased()) }
        case "title": return method { _, _ in .string(PythonString.title(s)) }
        case "capitalize": return method { _, _ in .string(PythonString.capitalize(s)) }
        case "startswith", "endswith":
            return method { a, _ in
                let options: [String]
                switch a.first {
                case let .string(p)?: options = [p]
                case let .array(list)?: options = list.compactMap { if case let .string(p) = $0 { return p }; return nil }
                default: throw JinjaError.runtime("\(name) needs a string")
                }
                return .bool(options.contains { name == "startswith" ? PythonString.hasPrefix(s, $0) : PythonString.hasSuffix(s, $0) })
            }
        case "split":
            return method { a, kw in
                let sep = a.first ?? kw.first { $0.0 == "sep" }?.1
                let maxSplit = try (a.count > 1 ? a[1] : kw.first { $0.0 == "maxsplit" }?.1).map { try int($0, "maxsplit") } ?? -1
                return .array(PythonString.split(s, separator: optionalString(sep), maxSplit: maxSplit).map { .string($0) })
            }
        case "replace":
            return method { a, _ in
                guard a.count >= 2, case let .string(old) = a[0], case let .string(new) = a[1] else { throw JinjaError.runtime("replace needs two strings") }
                let count = a.count > 2 ? try int(a[2], "replace count") : -1
                return .string(PythonString.replace(s, old, new, count: count))
            }
        case "find":
            return method { a, _ in
                guard case let .string(sub)? = a.first else { throw JinjaError.runtime("find needs a string") }
                return .int(PythonString.index(s, sub))
            }
        case "count":
            return method { a, _ in
                guard case let .string(sub)? = a.first else { throw JinjaError.runtime("count needs a string") }
                return .int(PythonString.count(s, sub))
            }
        case "join":
            return method { a, _ in .string(try iterate(a.first ?? .array([])).map(\.printed).joined(separator: s)) }
        case "format":
            return method { a, _ in
                var out = "", k = 0, rest = Substring(s)
                while let r = rest.range(of: "{}") { out += rest[..<r.lowerBound]; out += k < a.count ? a[k].printed : ""; k += 1; rest = rest[r.upperBound...] }
                return .string(out + rest)
            }
        case "isdigit": return method { _, _ in .bool(!s.isEmpty && s.allSatisfy { $0.isNumber }) }
        case "isspace": return method { _, _ in .bool(!s.isEmpty && s.unicodeScalars.allSatisfy(PythonString.isSpace)) }
        default: return nil
        }
    }

    /// jinja2's `title` filter (not str.title): words begin after runs of whitespace, '-', '(', '{',
    /// '[' or '<'; each word's first code point is upper-cased and the rest lower-cased.
    static func titleFilter(_ s: String) -> String {
        func isBreak(_ u: Unicode.Scalar) -> Bool { PythonString.isSpace(u) || "-({[<".unicodeScalars.contains(u) }
        var out = "", atWordStart = true
        for u in s.unicodeScalars {
            if isBreak(u) { out.unicodeScalars.append(u); atWordStart = true; continue }
            out += atWordStart ? String(u).uppercased() : String(u).lowercased()
            atWordStart = false
        }
        return out
    }

    // MARK: operators

    static func binary(_ op: String, _ a: JinjaValue, _ b: JinjaValue) throws -> JinjaValue {
        switch op {
        case "==": return .bool(a == b)
        case "!=": return .bool(a != b)
        case "~": return .string(a.printed + b.printed)
        case "in", "not in":
            let r: Bool
            switch b {
            case let .string(s):
                guard case let .string(sub) = a else { throw JinjaError.runtime("'in <string>' requires a string on the left, not '\(a.typeName)'") }
                r = PythonString.contains(s, sub)
            case let .array(list): r = list.contains(a)
            case let .object(o): if case let .string(k) = a { r = o[k] != nil } else { r = false }
            case .undefined: r = false  // jinja2's Undefined iterates as empty
            default: throw JinjaError.runtime("argument of type '\(b.typeName)' is not iterable")
            }
            return .bool(op == "in" ? r : !r)
        case "<", ">", "<=", ">=":
            let c: Int
            if case let .string(x) = a, case let .string(y) = b {
                c = PythonString.equal(x, y) ? 0 : (x.unicodeScalars.lexicographicallyPrecedes(y.unicodeScalars) ? -1 : 1)
            }
            else if let x = a.number, let y = b.number { c = x < y ? -1 : (x == y ? 0 : 1) }
            else { throw JinjaError.runtime("'\(op)' not supported between '\(a.typeName)' and '\(b.typeName)'") }
            switch op { case "<": return .bool(c < 0); case ">": return .bool(c > 0); case "<=": return .bool(c <= 0); default: return .bool(c >= 0) }
        case "+":
            switch (a, b) {
            case let (.string(x), .string(y)): return .string(x + y)
            case let (.array(x), .array(y)): return .array(x + y)
            default: break
            }
        case "*":
            if case let .string(x) = a, case let .int(n) = b { return .string(String(repeating: x, count: max(n, 0))) }
            if case let .array(x) = a, case let .int(n) = b { return .array(Array([[JinjaValue]](repeating: x, count: max(n, 0)).joined())) }
        default: break
        }
        // Numbers: int op int stays int (except /), otherwise float.
        if case let .int(x) = a, case let .int(y) = b {
            switch op {
            case "+": return .int(x + y)
            case "-": return .int(x - y)
            case "*": return .int(x * y)
            case "//": guard y != 0 else { throw JinjaError.runtime("integer division by zero") }
                return .int(Int((Double(x) / Double(y)).rounded(.down)))
            case "%": guard y != 0 else { throw JinjaError.runtime("integer modulo by zero") }
                return .int(((x % y) + y) % y)
            case "/": guard y != 0 else { throw JinjaError.runtime("division by zero") }
                return .double(Double(x) / Double(y))
            case "**": return y >= 0 ? .int(Int(pow(Double(x), Double(y)))) : .double(pow(Double(x), Double(y)))
            default: break
            }
        }
        guard let x = a.number, let y = b.number else {
            throw JinjaError.runtime("unsupported operand types for \(op): '\(a.typeName)' and '\(b.typeName)'")
        }
        switch op {
        case "+": return .double(x + y)
        case "-": return .double(x - y)
        case "*": return .double(x * y)
        case "/": guard y != 0 else { throw JinjaError.runtime("division by zero") }; return .double(x / y)
        case "//": guard y != 0 else { throw JinjaError.runtime("division by zero") }; return .double((x / y).rounded(.down))
        case "%": guard y != 0 else { throw JinjaError.runtime("modulo by zero") }; return .double(x - y * (x / y).rounded(.down))
        case "**": return .double(pow(x, y))
        default: throw JinjaError.runtime("unknown operator \(op)")
        }
    }

    // MARK: tests

    static func test(_ name: String, _ v: JinjaValue, _ args: [JinjaValue]) throws -> Bool {
        switch name {
        case "defined": return v.isDefined
        case "undefined": return !v.isDefined
        case "none": return v == .none && v.isDefined
        case "string": if case .string = v { return true }; return false
        case "mapping": if case .object = v { return true }; if case .namespace = v { return true }; return false
        case "sequence", "iterable":
            switch v { case .string, .array, .object: return true; default: return false }
        case "number": switch v { case .int, .double: return true; default: return false }
        case "integer": if case .int = v { return true }; return false
        case "float": if case .double = v { return true }; return false
        case "boolean": if case .bool = v { return true }; return false
        case "true": return v == .bool(true)
        case "false": return v == .bool(false)
        case "callable": if case .callable = v { return true }; return false
        case "even": return try int(v, "even test") % 2 == 0
        case "odd": return abs(try int(v, "odd test") % 2) == 1
        case "divisibleby": return try int(v, "divisibleby") % int(args.first ?? .int(1), "divisibleby") == 0
        case "eq", "equalto", "==": return v == (args.first ?? .none)
        case "ne", "!=": return v != (args.first ?? .none)
        case "sameas": return v == (args.first ?? .none)
        case "in": return try binary("in", v, args.first ?? .array([])).isTruthy
        case "lower": if case let .string(s) = v { return s == s.lowercased() }; return false
        case "upper": if case let .string(s) = v { return s == s.uppercased() }; return false
        default: throw JinjaError.runtime("unknown test '\(name)'")
        }
    }

    // MARK: filters

    static func kwarg(_ kwargs: [(String, JinjaValue)], _ name: String) -> JinjaValue? { kwargs.first { $0.0 == name }?.1 }

    static func filter(_ name: String, _ v: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws -> JinjaValue {
        func arg(_ i: Int, _ key: String) -> JinjaValue? { i < args.count ? args[i] : kwarg(kwargs, key) }
        switch name {
        case "trim", "strip": return .string(strip(v.printed, arg(0, "chars"), leading: true, trailing: true))
        case "upper": return .string(v.printed.uppercased())
        case "lower": return .string(v.printed.lowercased())
        case "capitalize": return .string(PythonString.capitalize(v.printed))
        case "title": return .string(titleFilter(v.printed))
        case "string": return .string(v.printed)
        case "safe", "e", "escape" where name == "safe": return v
        case "length", "count":
            switch v {
            case let .string(s): return .int(PythonString.length(s))
            case let .array(a): return .int(a.count)
            case let .object(o): return .int(o.count)
            case .undefined: return .int(0)
            default: throw JinjaError.runtime("object of type '\(v.typeName)' has no len()")
            }
        case "first": return try iterate(v).first ?? .undefined("first")
        case "last": return try iterate(v).last ?? .undefined("last")
        case "list": return .array(try iterate(v))
        case "reverse":
            if case let .string(s) = v { return .string(String(s.reversed())) }
            return .array(try iterate(v).reversed())
        case "join":
            var items = try iterate(v)
            if case let .string(attr)? = kwarg(kwargs, "attribute") { items = try items.map { try attribute($0, attr) } }
            let sep = arg(0, "d")?.printed ?? ""
            return .string(items.map(\.printed).joined(separator: sep))
        case "default", "d":
            let fallback = arg(0, "default_value") ?? .string("")
            let boolean = arg(1, "boolean")?.isTruthy ?? false
            return (!v.isDefined || (boolean && !v.isTruthy)) ? fallback : v
        case "replace":
            guard args.count >= 2 else { throw JinjaError.runtime("replace needs two arguments") }
            return .string(PythonString.replace(v.printed, args[0].printed, args[1].printed, count: args.count > 2 ? try int(args[2], "count") : -1))
        case "items":
            switch v {
            case let .object(o): return .array(o.pairs.map { .array([.string($0.0), $0.1]) })
            case .undefined: return .array([])
            default: throw JinjaError.runtime("items filter needs a mapping")
            }
        case "dictsort":
            guard case let .object(o) = v else { throw JinjaError.runtime("dictsort needs a mapping") }
            return .array(o.pairs.sorted { $0.0.lowercased() < $1.0.lowercased() }.map { .array([.string($0.0), $0.1]) })
        case "tojson":
            let indent = try arg(0, "indent").flatMap { $0 == .none ? nil : try int($0, "indent") }
            var separators: (String, String)?
            if case let .array(sp)? = kwarg(kwargs, "separators"), sp.count == 2 { separators = (sp[0].printed, sp[1].printed) }
            return .string(try JinjaJSON.dumps(v, indent: indent, ensureASCII: kwarg(kwargs, "ensure_ascii")?.isTruthy ?? false,
                                               sortKeys: kwarg(kwargs, "sort_keys")?.isTruthy ?? false, separators: separators))
        case "int":
            switch v {
            case let .int(i): return .int(i)
            case let .double(d): return .int(Int(d))
            case let .bool(b): return .int(b ? 1 : 0)
            case let .string(s): return .int(Int(s.trimmingCharacters(in: .whitespaces)) ?? Int(Double(s) ?? 0))
            default: return arg(0, "default") ?? .int(0)
            }
        case "float":
            if let n = v.number { return .double(n) }
            if case let .string(s) = v, let d = Double(s.trimmingCharacters(in: .whitespaces)) { return .double(d) }
            return arg(0, "default") ?? .double(0)
        case "abs":
            if case let .int(i) = v { return .int(abs(i)) }
            if let d = v.number { return .double(abs(d)) }
            throw JinjaError.runtime("bad operand for abs()")
        case "round":
            guard let d = v.number else { throw JinjaError.runtime("round needs a number") }
            let digits = try arg(0, "precision").map { try int($0, "precision") } ?? 0
            let f = pow(10.0, Double(digits))
            return .double((d * f).rounded(.toNearestOrEven) / f)
        case "unique":
            var seen: [JinjaValue] = []
            for x in try iterate(v) where !seen.contains(x) { seen.append(x) }
            return .array(seen)
        case "sum":
            return try iterate(v).reduce(JinjaValue.int(0)) { try binary("+", $0, $1) }
        case "min", "max":
            let items = try iterate(v)
            guard var best = items.first else { return .undefined(name) }
            for x in items.dropFirst() where try binary(name == "min" ? "<" : ">", x, best).isTruthy { best = x }
            return best
        case "sort":
            let reverse = arg(0, "reverse")?.isTruthy ?? false
            var items = try iterate(v)
            if case let .string(attr)? = kwarg(kwargs, "attribute") {
                items = try items.map { ($0, try attribute($0, attr)) }.sorted { try binary("<", $0.1, $1.1).isTruthy }.map(\.0)
            } else {
                items = try items.sorted { try binary("<", $0, $1).isTruthy }
            }
            return .array(reverse ? items.reversed() : items)
        case "map":
            let items = try iterate(v)
            if case let .string(attr)? = kwarg(kwargs, "attribute") {
                return .array(try items.map { x in
                    let r = try attribute(x, attr)
                    return r.isDefined ? r : (kwarg(kwargs, "default") ?? r)
                })
            }
            guard case let .string(f)? = args.first else { throw JinjaError.runtime("map needs a filter name or attribute=") }
            return .array(try items.map { try filter(f, $0, Array(args.dropFirst()), []) })
        case "select", "reject":
            let items = try iterate(v)
            let keep = name == "select"
            return .array(try items.filter { x in
                guard case let .string(t)? = args.first else { return x.isTruthy == keep }
                return try test(t, x, Array(args.dropFirst())) == keep
            })
        case "selectattr", "rejectattr":
            guard case let .string(attr)? = args.first else { throw JinjaError.runtime("\(name) needs an attribute name") }
            let keep = name == "selectattr"
            return .array(try iterate(v).filter { x in
                let a = try attribute(x, attr)
                guard args.count > 1, case let .string(t) = args[1] else { return a.isTruthy == keep }
                return try test(t, a, Array(args.dropFirst(2))) == keep
            })
        case "indent":
            let width = try arg(0, "width").map { try int($0, "width") } ?? 4
            let first = arg(1, "first")?.isTruthy ?? false
            let pad = String(repeating: " ", count: width)
            let lines = v.printed.components(separatedBy: "\n")
            return .string(lines.enumerated().map { i, l in (i == 0 && !first) || l.isEmpty ? l : pad + l }.joined(separator: "\n"))
        case "wordcount": return .int(PythonString.split(v.printed, separator: nil, maxSplit: -1).count)
        default: throw JinjaError.runtime("unknown filter '\(name)'")
        }
    }
}
