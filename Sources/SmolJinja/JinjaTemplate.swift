import Foundation

/// A compiled template. Rendering follows jinja2 as Hugging Face configures it for chat templates:
/// trim_blocks and lstrip_blocks on, `tojson` as json.dumps without key sorting or ASCII escaping,
/// `raise_exception` and `strftime_now` as globals, loop controls and `{% generation %}`.
public final class JinjaTemplate {
    let nodes: [Node]

    public init(_ source: String, trimBlocks: Bool = true, lstripBlocks: Bool = true) throws {
        nodes = try JinjaParser(source: source, trimBlocks: trimBlocks, lstripBlocks: lstripBlocks).parse()
    }

    public struct Output {
        public var text: String
        /// UTF-8 byte ranges of the text rendered inside `{% generation %}` blocks.
        public var generationSpans: [Range<Int>]
    }

    public func render(_ context: JinjaObject) throws -> String { try renderWithSpans(context).text }

    public func renderWithSpans(_ context: JinjaObject) throws -> Output {
        let r = Renderer(globals: context)
        try r.run(nodes)
        return Output(text: r.out, generationSpans: r.spans)
    }
}

private enum LoopSignal: Error { case breakLoop, continueLoop }

final class Renderer {
    var out = ""
    var outBytes = 0
    var spans: [Range<Int>] = []
    private var scopes: [[String: JinjaValue]]

    init(globals: JinjaObject) {
        var g: [String: JinjaValue] = [:]
        for (k, v) in globals.pairs { g[k] = v }
        for (k, v) in Builtins.globals where g[k] == nil { g[k] = v }
        scopes = [g]
    }

    private func emit(_ s: String) { out += s; outBytes += s.utf8.count }

    private func lookup(_ name: String) -> JinjaValue {
        for scope in scopes.reversed() { if let v = scope[name] { return v } }
        return .undefined(name)
    }
    private func assign(_ name: String, _ v: JinjaValue) { scopes[scopes.count - 1][name] = v }

    func run(_ nodes: [Node]) throws {
        for n in nodes { try exec(n) }
    }

    private func exec(_ node: Node) throws {
        switch node {
        case let .text(s): emit(s)
        case let .output(e): emit(try eval(e).printed)
        case let .ifChain(branches, otherwise):
            for (cond, body) in branches where try eval(cond).isTruthy { try run(body); return }
            try run(otherwise)
        case let .forLoop(targets, iterable, condition, body, otherwise):
            try forLoop(targets: targets, iterable: iterable, condition: condition, body: body, otherwise: otherwise)
        case let .set(targets, attribute, value):
            let v = try eval(value)
            if let attr = attribute {
                guard case let .namespace(ns) = lookup(targets[0]) else {
                    throw JinjaError.runtime("cannot assign attribute '\(attr)' on '\(targets[0])', which is not a namespace")
                }
                ns.attributes[attr] = v
            } else if targets.count == 1 {
                assign(targets[0], v)
            } else {
                let items = try Builtins.iterate(v)
                guard items.count == targets.count else { throw JinjaError.runtime("cannot unpack \(items.count) values into \(targets.count) names") }
                for (n, x) in zip(targets, items) { assign(n, x) }
            }
        case let .setBlock(name, body):
            let saved = out, savedBytes = outBytes
            out = ""
            try run(body)
            let captured = out
            out = saved; outBytes = savedBytes
            assign(name, .string(captured))
        case let .macro(name, parameters, body):
            let defining = scopes
            assign(name, .callable(JinjaCallable(name) { [unowned self] args, kwargs in
                var local: [String: JinjaValue] = [:]
                for (i, (pname, def)) in parameters.enumerated() {
                    if i < args.count { local[pname] = args[i] }
                    else if let kw = kwargs.first(where: { $0.0 == pname }) { local[pname] = kw.1 }
                    else if let d = def { local[pname] = try self.eval(d) }
                    else { local[pname] = .undefined(pname) }
                }
                let savedScopes = self.scopes, saved = self.out, savedBytes = self.outBytes
                self.scopes = defining + [local]
                self.out = ""
                defer { self.scopes = savedScopes; self.out = saved; self.outBytes = savedBytes }
                try self.run(body)
                return .string(self.out)
            }))
        case let .generation(body):
            let start = outBytes
            try run(body)
            spans.append(start..<outBytes)
        case .breakLoop: throw LoopSignal.breakLoop
        case .continueLoop: throw LoopSignal.continueLoop
        }
    }

    private func forLoop(targets: [String], iterable: Expr, condition: Expr?, body: [Node], otherwise: [Node]) throws {
        var items = try Builtins.iterate(try eval(iterable))
        scopes.append([:])
        defer { scopes.removeLast() }
        func bind(_ item: JinjaValue) throws {
            if targets.count == 1 { assign(targets[0], item); return }
            let parts = try Builtins.iterate(item)
            guard parts.count == targets.count else { throw JinjaError.runtime("cannot unpack \(parts.count) values into \(targets.count) names") }
            for (n, x) in zip(targets, parts) { assign(n, x) }
        }
        if let cond = condition {   // the filter applies before loop.* is computed, as in jinja2
            items = try items.filter { try bind($0); return try eval(cond).isTruthy }
        }
        if items.isEmpty { try run(otherwise); return }
        for (i, item) in items.enumerated() {
            try bind(item)
            let n = items.count
            var loop = JinjaObject()
            loop["index"] = .int(i + 1); loop["index0"] = .int(i)
            loop["revindex"] = .int(n - i); loop["revindex0"] = .int(n - i - 1)
            loop["first"] = .bool(i == 0); loop["last"] = .bool(i == n - 1); loop["length"] = .int(n)
            loop["previtem"] = i > 0 ? items[i - 1] : .undefined("previtem")
            loop["nextitem"] = i + 1 < n ? items[i + 1] : .undefined("nextitem")
            loop["cycle"] = .callable(JinjaCallable("cycle") { args, _ in args.isEmpty ? .none : args[i % args.count] })
            assign("loop", .object(loop))
            do { try run(body) }
            catch LoopSignal.breakLoop { break }
            catch LoopSignal.continueLoop { continue }
        }
    }

    // MARK: expressions

    func eval(_ e: Expr) throws -> JinjaValue {
        switch e {
        case let .literal(v): return v
        case let .name(n): return lookup(n)
        case let .list(items): return .array(try items.map(eval))
        case let .tuple(items): return .array(try items.map(eval))
        case let .dict(pairs):
            var o = JinjaObject()
            for (k, v) in pairs {
                guard case let .string(key) = try eval(k) else { throw JinjaError.runtime("dict keys must be strings") }
                o[key] = try eval(v)
            }
            return .object(o)
        case let .attribute(base, name):
            return try Builtins.attribute(try eval(base), name)
        case let .index(base, index):
            return try Builtins.item(try eval(base), try eval(index))
        case let .slice(base, a, b, c):
            return try Builtins.slice(try eval(base), try a.map(eval), try b.map(eval), try c.map(eval))
        case let .call(fn, args, kwargs):
            let f = try eval(fn)
            guard case let .callable(c) = f else {
                if case let .undefined(n) = f { throw JinjaError.runtime("'\(n)' is undefined and cannot be called") }
                throw JinjaError.runtime("'\(f.typeName)' object is not callable")
            }
            return try c.body(try args.map(eval), try kwargs.map { ($0.0, try eval($0.1)) })
        case let .filter(base, name, args, kwargs):
            return try Builtins.filter(name, try eval(base), try args.map(eval), try kwargs.map { ($0.0, try eval($0.1)) })
        case let .test(base, name, args, negated):
            let r = try Builtins.test(name, try eval(base), try args.map(eval))
            return .bool(negated ? !r : r)
        case let .unary(op, x):
            let v = try eval(x)
            switch op {
            case "not": return .bool(!v.isTruthy)
            case "-":
                if case let .int(i) = v { return .int(-i) }
                if case let .double(d) = v { return .double(-d) }
                throw JinjaError.runtime("bad operand type for unary -: '\(v.typeName)'")
            default: return v
            }
        case let .binary(op, l, r):
            if op == "and" { let a = try eval(l); return a.isTruthy ? try eval(r) : a }
            if op == "or" { let a = try eval(l); return a.isTruthy ? a : try eval(r) }
            return try Builtins.binary(op, try eval(l), try eval(r))
        case let .conditional(then, condition, otherwise):
            if try eval(condition).isTruthy { return try eval(then) }
            return try otherwise.map(eval) ?? .undefined("else")
        }
    }
}
