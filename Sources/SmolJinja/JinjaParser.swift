import Foundation

indirect enum Expr {
    case literal(JinjaValue)
    case name(String)
    case list([Expr]), tuple([Expr]), dict([(Expr, Expr)])
    case attribute(Expr, String)
    case index(Expr, Expr)
    case slice(Expr, Expr?, Expr?, Expr?)
    case call(Expr, [Expr], [(String, Expr)])
    case filter(Expr, String, [Expr], [(String, Expr)])
    case test(Expr, String, [Expr], negated: Bool)
    case unary(String, Expr)
    case binary(String, Expr, Expr)
    case conditional(then: Expr, condition: Expr, otherwise: Expr?)
}

indirect enum Node {
    case text(String)
    case output(Expr)
    case ifChain([(Expr, [Node])], otherwise: [Node])
    case forLoop(targets: [String], iterable: Expr, condition: Expr?, body: [Node], otherwise: [Node])
    case set(targets: [String], attribute: String?, value: Expr)
    case setBlock(String, [Node])
    case macro(name: String, parameters: [(String, Expr?)], body: [Node])
    case generation([Node])
    case breakLoop, continueLoop
}

/// Tokens of one tag's inside.
struct ExprToken: Equatable {
    enum Kind: Equatable { case name, string, int, float, op, end }
    let kind: Kind, text: String, offset: Int
}

/// Parses the statement and expression syntax that chat templates use (jinja2's grammar and
/// operator precedence). Anything else is an error naming the construct and its position.
final class JinjaParser {
    private let source: [Unicode.Scalar]
    private var pieces: [JinjaLexer.Piece]
    private var p = 0
    // Current tag's tokens.
    private var tokens: [ExprToken] = []
    private var t = 0
    private var tagOffset = 0

    init(source: String, trimBlocks: Bool, lstripBlocks: Bool) throws {
        self.source = Array(source.unicodeScalars)
        pieces = try JinjaLexer.split(source, trimBlocks: trimBlocks, lstripBlocks: lstripBlocks)
    }

    func parse() throws -> [Node] {
        let (nodes, end) = try parseBlock(until: [])
        if let end { throw error("unexpected '{% \(end) %}'") }
        return nodes
    }

    private func error(_ message: String, at offset: Int? = nil) -> JinjaError {
        let (line, col) = JinjaLexer.position(source, offset ?? tagOffset)
        return .syntax(message, line: line, column: col)
    }

    /// Parses nodes until a statement whose keyword is in `until`; returns that keyword (its
    /// tokens stay current so the caller can read the rest of the tag).
    private func parseBlock(until: Set<String>) throws -> ([Node], String?) {
        var nodes: [Node] = []
        while p < pieces.count {
            let piece = pieces[p]; p += 1
            switch piece {
            case let .text(s): nodes.append(.text(s))
            case let .output(inner, offset):
                try startTag(inner, offset: offset + 2)
                let e = try expression()
                try expectEnd()
                nodes.append(.output(e))
            case let .statement(inner, offset):
                try startTag(inner, offset: offset + 2)
                guard current.kind == .name else { throw error("expected a statement keyword") }
                let keyword = current.text
                if until.contains(keyword) { advance(); return (nodes, keyword) }
                advance()
                nodes.append(try statement(keyword))
            }
        }
        if !until.isEmpty { throw error("missing {% \(until.sorted().joined(separator: " or ")) %} before the end of the template", at: source.count) }
        return (nodes, nil)
    }

    private func statement(_ keyword: String) throws -> Node {
        let at = tagOffset
        switch keyword {
        case "if":
            var branches: [(Expr, [Node])] = []
            var condition = try expression()
            try expectEnd()
            while true {
                let (body, end) = try parseBlock(until: ["elif", "else", "endif"])
                branches.append((condition, body))
                switch end {
                case "elif": condition = try expression(); try expectEnd()
                case "else":
                    try expectEnd()
                    let (otherwise, _) = try parseBlock(until: ["endif"])
                    try expectEnd()
                    return .ifChain(branches, otherwise: otherwise)
                default: try expectEnd(); return .ifChain(branches, otherwise: [])
                }
            }
        case "for":
            var targets = [try name()]
            while accept(",") { targets.append(try name()) }
            guard acceptName("in") else { throw error("expected 'in' in for loop") }
            let iterable = try expression(allowConditional: false)
            var condition: Expr?
            if acceptName("if") { condition = try expression() }
            if acceptName("recursive") { throw error("recursive for loops are not supported", at: at) }
            try expectEnd()
            let (body, end) = try parseBlock(until: ["else", "endfor"])
            var otherwise: [Node] = []
            try expectEnd()
            if end == "else" { (otherwise, _) = try parseBlock(until: ["endfor"]); try expectEnd() }
            return .forLoop(targets: targets, iterable: iterable, condition: condition, body: body, otherwise: otherwise)
        case "set":
            var targets = [try name()]
            var attribute: String?
            if accept(".") { attribute = try name() }
            while accept(",") { targets.append(try name()) }
            if current.kind == .end {
                guard targets.count == 1, attribute == nil else { throw error("block set takes one name") }
                let (body, _) = try parseBlock(until: ["endset"])
                try expectEnd()
                return .setBlock(targets[0], body)
            }
            guard accept("=") else { throw error("expected '=' in set") }
            let value = try expression()
            try expectEnd()
            return .set(targets: targets, attribute: attribute, value: value)
        case "macro":
            let macroName = try name()
            guard accept("(") else { throw error("expected '(' after macro name") }
            var params: [(String, Expr?)] = []
            while !accept(")") {
                let pname = try name()
                params.append((pname, accept("=") ? try expression() : nil))
                if !accept(",") { guard accept(")") else { throw error("expected ',' or ')' in macro parameters") }; break }
            }
            try expectEnd()
            let (body, _) = try parseBlock(until: ["endmacro"])
            try expectEnd()
            return .macro(name: macroName, parameters: params, body: body)
        case "generation":
            try expectEnd()
            let (body, _) = try parseBlock(until: ["endgeneration"])
            try expectEnd()
            return .generation(body)
        case "break": try expectEnd(); return .breakLoop
        case "continue": try expectEnd(); return .continueLoop
        default:
            throw error("unsupported statement '{% \(keyword) %}'", at: at)
        }
    }

    // MARK: tokens

    private var current: ExprToken { tokens[t] }
    private func advance() { if t < tokens.count - 1 { t += 1 } }
    private func accept(_ op: String) -> Bool {
        if current.kind == .op && current.text == op { advance(); return true }
        return false
    }
    private func acceptName(_ word: String) -> Bool {
        if current.kind == .name && current.text == word { advance(); return true }
        return false
    }
    private func name() throws -> String {
        guard current.kind == .name else { throw error("expected a name, found '\(current.text)'", at: current.offset) }
        defer { advance() }
        return current.text
    }
    private func expectEnd() throws {
        guard current.kind == .end else { throw error("unexpected '\(current.text)'", at: current.offset) }
    }

    private func startTag(_ inner: String, offset: Int) throws {
        tagOffset = offset
        tokens = try tokenize(inner, base: offset)
        t = 0
    }

    private func tokenize(_ s: String, base: Int) throws -> [ExprToken] {
        let c = Array(s.unicodeScalars)
        var out: [ExprToken] = []
        var i = 0
        let ops3 = ["**=", "//="], ops2 = ["==", "!=", "<=", ">=", "//", "**"]
        while i < c.count {
            let ch = c[i]
            if ch == " " || ch == "\t" || ch == "\n" || ch == "\r" { i += 1; continue }
            let start = i
            if ch.properties.isAlphabetic || ch == "_" {
                while i < c.count, c[i].properties.isAlphabetic || c[i] == "_" || ("0"..."9").contains(c[i]) { i += 1 }
                out.append(ExprToken(kind: .name, text: str(c[start..<i]), offset: base + start)); continue
            }
            if ("0"..."9").contains(ch) {
                var isFloat = false
                while i < c.count, ("0"..."9").contains(c[i]) || c[i] == "_" || (c[i] == "." && !isFloat && i + 1 < c.count && ("0"..."9").contains(c[i + 1])) {
                    if c[i] == "." { isFloat = true }
                    i += 1
                }
                out.append(ExprToken(kind: isFloat ? .float : .int, text: str(c[start..<i]).replacingOccurrences(of: "_", with: ""), offset: base + start)); continue
            }
            if ch == "'" || ch == "\"" {
                i += 1
                var v = String.UnicodeScalarView()
                while i < c.count, c[i] != ch {
                    if c[i] == "\\", i + 1 < c.count {
                        i += 1
                        switch c[i] {
                        case "n": v.append("\n"); case "t": v.append("\t"); case "r": v.append("\r")
                        case "\\": v.append("\\"); case "'": v.append("'"); case "\"": v.append("\"")
                        case "0": v.append("\0")
                        case "u" where i + 4 < c.count:
                            if let code = UInt32(str(c[(i + 1)...(i + 4)]), radix: 16), let u = Unicode.Scalar(code) { v.append(u); i += 4 }
                            else { v.append("\\"); v.append("u") }
                        default: v.append("\\"); v.append(c[i])
                        }
                        i += 1; continue
                    }
                    v.append(c[i]); i += 1
                }
                guard i < c.count else { throw error("unterminated string", at: base + start) }
                i += 1
                out.append(ExprToken(kind: .string, text: String(v), offset: base + start)); continue
            }
            let rest = str(c[i..<min(i + 3, c.count)])
            if let op = ops3.first(where: { rest.hasPrefix($0) }) ?? ops2.first(where: { rest.hasPrefix($0) }) {
                out.append(ExprToken(kind: .op, text: op, offset: base + start)); i += op.unicodeScalars.count; continue
            }
            if "+-*/%~()[]{}.,:|=<>".unicodeScalars.contains(ch) {
                out.append(ExprToken(kind: .op, text: String(ch), offset: base + start)); i += 1; continue
            }
            throw error("unexpected character '\(ch)'", at: base + start)
        }
        out.append(ExprToken(kind: .end, text: "end of tag", offset: base + c.count))
        return out
    }

    private func str(_ s: ArraySlice<Unicode.Scalar>) -> String { var v = String.UnicodeScalarView(); v.append(contentsOf: s); return String(v) }

    // MARK: expressions (jinja2's precedence, lowest first)

    func expression(allowConditional: Bool = true) throws -> Expr {
        let e = try orExpr()
        if allowConditional && acceptName("if") {
            let condition = try orExpr()
            let otherwise = acceptName("else") ? try expression() : nil
            return .conditional(then: e, condition: condition, otherwise: otherwise)
        }
        return e
    }

    private func orExpr() throws -> Expr {
        var e = try andExpr()
        while acceptName("or") { e = .binary("or", e, try andExpr()) }
        return e
    }
    private func andExpr() throws -> Expr {
        var e = try notExpr()
        while acceptName("and") { e = .binary("and", e, try notExpr()) }
        return e
    }
    private func notExpr() throws -> Expr {
        if acceptName("not") { return .unary("not", try notExpr()) }
        return try compare()
    }
    private func compare() throws -> Expr {
        var e = try math1()
        while true {
            if current.kind == .op, ["==", "!=", "<", ">", "<=", ">="].contains(current.text) {
                let op = current.text; advance()
                e = .binary(op, e, try math1())
            } else if acceptName("in") {
                e = .binary("in", e, try math1())
            } else if current.kind == .name, current.text == "not", t + 1 < tokens.count, tokens[t + 1].text == "in" {
                advance(); advance()
                e = .binary("not in", e, try math1())
            } else { return e }
        }
    }
    private func math1() throws -> Expr {
        var e = try concat()
        while current.kind == .op, current.text == "+" || current.text == "-" {
            let op = current.text; advance()
            e = .binary(op, e, try concat())
        }
        return e
    }
    private func concat() throws -> Expr {
        var e = try math2()
        while accept("~") { e = .binary("~", e, try math2()) }
        return e
    }
    private func math2() throws -> Expr {
        var e = try power()
        while current.kind == .op, ["*", "/", "//", "%"].contains(current.text) {
            let op = current.text; advance()
            e = .binary(op, e, try power())
        }
        return e
    }
    private func power() throws -> Expr {
        var e = try unary()
        while accept("**") { e = .binary("**", e, try unary()) }
        return e
    }
    private func unary(withFilter: Bool = true) throws -> Expr {
        var e: Expr
        if accept("-") { e = .unary("-", try unary(withFilter: false)) }
        else if accept("+") { e = .unary("+", try unary(withFilter: false)) }
        else { e = try postfix(try primary()) }
        if withFilter { e = try filters(e) }
        return e
    }

    private func primary() throws -> Expr {
        let tok = current
        switch tok.kind {
        case .string:
            advance()
            var s = tok.text
            while current.kind == .string { s += current.text; advance() }   // adjacent literals join
            return .literal(.string(s))
        case .int: advance(); return .literal(.int(Int(tok.text) ?? 0))
        case .float: advance(); return .literal(.double(Double(tok.text) ?? 0))
        case .name:
            advance()
            switch tok.text {
            case "true", "True": return .literal(.bool(true))
            case "false", "False": return .literal(.bool(false))
            case "none", "None": return .literal(.none)
            default: return .name(tok.text)
            }
        case .op:
            if accept("(") {
                if accept(")") { return .tuple([]) }
                let first = try expression()
                if accept(")") { return first }
                var items = [first]
                while accept(",") { if current.text == ")" { break }; items.append(try expression()) }
                guard accept(")") else { throw error("expected ')'", at: current.offset) }
                return .tuple(items)
            }
            if accept("[") {
                var items: [Expr] = []
                while !accept("]") {
                    items.append(try expression())
                    if !accept(",") { guard accept("]") else { throw error("expected ',' or ']'", at: current.offset) }; break }
                }
                return .list(items)
            }
            if accept("{") {
                var pairs: [(Expr, Expr)] = []
                while !accept("}") {
                    let k = try expression()
                    guard accept(":") else { throw error("expected ':' in dict literal", at: current.offset) }
                    pairs.append((k, try expression()))
                    if !accept(",") { guard accept("}") else { throw error("expected ',' or '}'", at: current.offset) }; break }
                }
                return .dict(pairs)
            }
            throw error("unexpected '\(tok.text)'", at: tok.offset)
        case .end:
            throw error("expression expected", at: tok.offset)
        }
    }

    private func postfix(_ base: Expr) throws -> Expr {
        var e = base
        while true {
            if accept(".") {
                guard current.kind == .name || current.kind == .int else { throw error("expected an attribute name", at: current.offset) }
                let attr = current.text; advance()
                e = .attribute(e, attr)
            } else if accept("[") {
                var parts: [Expr?] = [nil]
                var isSlice = false
                while true {
                    if accept("]") { break }
                    if accept(":") { isSlice = true; parts.append(nil); continue }
                    parts[parts.count - 1] = try expression()
                }
                if isSlice {
                    guard parts.count <= 3 else { throw error("slice with too many ':'", at: current.offset) }
                    while parts.count < 3 { parts.append(nil) }
                    e = .slice(e, parts[0], parts[1], parts[2])
                } else {
                    guard let idx = parts[0] else { throw error("empty subscript", at: current.offset) }
                    e = .index(e, idx)
                }
            } else if current.kind == .op, current.text == "(" {
                advance()
                let (args, kwargs) = try arguments()
                e = .call(e, args, kwargs)
            } else { return e }
        }
    }

    /// Call arguments after '(' up to and including ')'.
    private func arguments() throws -> ([Expr], [(String, Expr)]) {
        var args: [Expr] = [], kwargs: [(String, Expr)] = []
        while !accept(")") {
            if current.kind == .name, t + 1 < tokens.count, tokens[t + 1].kind == .op, tokens[t + 1].text == "=" {
                let key = current.text; advance(); advance()
                kwargs.append((key, try expression()))
            } else {
                args.append(try expression())
            }
            if !accept(",") { guard accept(")") else { throw error("expected ',' or ')' in call", at: current.offset) }; break }
        }
        return (args, kwargs)
    }

    private func filters(_ base: Expr) throws -> Expr {
        var e = base
        while true {
            if accept("|") {
                var filterName = try name()
                while accept(".") { filterName += "." + (try name()) }
                var args: [Expr] = [], kwargs: [(String, Expr)] = []
                if current.kind == .op, current.text == "(" { advance(); (args, kwargs) = try arguments() }
                e = .filter(e, filterName, args, kwargs)
            } else if current.kind == .name, current.text == "is" {
                advance()
                let negated = acceptName("not")
                let testName = try name()
                var args: [Expr] = []
                if current.kind == .op, current.text == "(" { advance(); args = try arguments().0 }
                else if [.string, .int, .float].contains(current.kind) || (current.kind == .name && !["and", "or", "else", "if", "in", "not", "is"].contains(current.text)) {
                    args = [try primary()]
                }
                e = .test(e, testName, args, negated: negated)
            } else if current.kind == .op, current.text == "(" {
                advance()
                let (args, kwargs) = try arguments()
                e = .call(e, args, kwargs)
            } else { return e }
        }
    }
}
