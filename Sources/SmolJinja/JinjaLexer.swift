import Foundation

public enum JinjaError: Error, CustomStringConvertible {
    /// Template syntax this interpreter does not parse, with its line and column.
    case syntax(String, line: Int, column: Int)
    case runtime(String)
    /// raise_exception(...) called by the template itself.
    case raised(String)

    public var description: String {
        switch self {
        case let .syntax(m, line, column): return "template line \(line), column \(column): \(m)"
        case let .runtime(m): return "template error: \(m)"
        case let .raised(m): return "template raised: \(m)"
        }
    }
}

/// Splits a template into text and tags, applying whitespace control the way jinja2 does:
/// `{%-`/`-%}` strip all whitespace on that side; with `lstripBlocks`, spaces and tabs before a
/// block or comment tag that starts its line are removed (unless `{%+`); with `trimBlocks`, the
/// first newline after a block or comment tag is removed.
struct JinjaLexer {
    enum Piece {
        case text(String)
        case output(String, offset: Int)     // {{ ... }}
        case statement(String, offset: Int)  // {% ... %}
    }

    static func split(_ source: String, trimBlocks: Bool, lstripBlocks: Bool) throws -> [Piece] {
        let s = Array(source.unicodeScalars)
        var pieces: [Piece] = []
        var text: [Unicode.Scalar] = []
        var i = 0
        var stripNextLeading = false, trimNextNewline = false

        func flushText() {
            if !text.isEmpty { var v = String.UnicodeScalarView(); v.append(contentsOf: text); pieces.append(.text(String(v))); text.removeAll() }
        }
        func isSpace(_ c: Unicode.Scalar) -> Bool { c == " " || c == "\t" || c == "\n" || c == "\r" }

        while i < s.count {
            let c = s[i]
            let open: Unicode.Scalar? = (c == "{" && i + 1 < s.count && ["{", "%", "#"].contains(s[i + 1])) ? s[i + 1] : nil
            guard let kind = open else {
                if stripNextLeading && isSpace(c) { i += 1; continue }
                stripNextLeading = false
                if trimNextNewline { trimNextNewline = false; if c == "\n" { i += 1; continue } }
                text.append(c); i += 1
                continue
            }
            stripNextLeading = false; trimNextNewline = false
            let start = i
            var j = i + 2
            let minus = j < s.count && s[j] == "-", plus = j < s.count && s[j] == "+"
            if minus || plus { j += 1 }
            let isBlock = kind == "%" || kind == "#"
            if minus {
                while let last = text.last, isSpace(last) { text.removeLast() }
            } else if isBlock && lstripBlocks && !plus {
                // Remove the spaces and tabs that precede the tag when only they stand between it and
                // the start of its line (in the source).
                var k = start
                while k > 0, s[k - 1] == " " || s[k - 1] == "\t" { k -= 1 }
                if k == 0 || s[k - 1] == "\n" {
                    var n = start - k
                    while n > 0, let last = text.last, last == " " || last == "\t" { text.removeLast(); n -= 1 }
                }
            }
            flushText()
            // Find the closing delimiter, skipping string literals inside expressions.
            let close: Unicode.Scalar = kind == "{" ? "}" : (kind == "%" ? "%" : "#")
            var quote: Unicode.Scalar? = nil
            var end = -1
            var k = j
            while k + 1 < s.count {
                let ch = s[k]
                if kind != "#" {
                    if let q = quote { if ch == "\\" { k += 2; continue }; if ch == q { quote = nil }; k += 1; continue }
                    if ch == "'" || ch == "\"" { quote = ch; k += 1; continue }
                }
                if ch == close && s[k + 1] == "}" { end = k; break }
                k += 1
            }
            guard end >= 0 else {
                let (line, col) = position(s, start)
                throw JinjaError.syntax("unclosed '{\(kind)' tag", line: line, column: col)
            }
            var innerEnd = end
            let rightMinus = innerEnd > j && s[innerEnd - 1] == "-"
            if rightMinus { innerEnd -= 1 }
            var v = String.UnicodeScalarView(); v.append(contentsOf: s[j..<max(j, innerEnd)])
            let inner = String(v)
            switch kind {
            case "{": pieces.append(.output(inner, offset: start))
            case "%": pieces.append(.statement(inner, offset: start))
            default: break   // comment
            }
            i = end + 2
            if rightMinus { stripNextLeading = true } else if isBlock && trimBlocks { trimNextNewline = true }
        }
        flushText()
        return pieces
    }

    static func position(_ s: [Unicode.Scalar], _ offset: Int) -> (Int, Int) {
        var line = 1, col = 1
        for k in 0..<min(offset, s.count) { if s[k] == "\n" { line += 1; col = 1 } else { col += 1 } }
        return (line, col)
    }
}
