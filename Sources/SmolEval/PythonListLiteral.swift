import Foundation

/// The part of Python's `ast.literal_eval` that lm-eval applies to a rendered `doc_to_choice`
/// template: a list of string (or number) literals, as Jinja prints a list, e.g. `['a', "b's"]`.
enum PythonListLiteral {
    static func strings(_ text: String) throws -> [String] {
        let s = Array(text.unicodeScalars)
        var i = 0
        func bad(_ why: String) -> EvalError { EvalError("doc_to_choice gave \(text.prefix(80)), not a Python list: \(why) at character \(i)") }
        func skipSpace() { while i < s.count, s[i].properties.isWhitespace { i += 1 } }
        skipSpace()
        guard i < s.count, s[i] == "[" else { throw bad("expected '['") }
        i += 1
        var out: [String] = []
        skipSpace()
        if i < s.count, s[i] == "]" { i += 1; skipSpace(); guard i == s.count else { throw bad("text after ']'") }; return out }
        while true {
            skipSpace()
            guard i < s.count else { throw bad("unterminated list") }
            if s[i] == "'" || s[i] == "\"" { out.append(try quoted()) } else { out.append(try number()) }
            skipSpace()
            guard i < s.count else { throw bad("unterminated list") }
            if s[i] == "," {
                i += 1; skipSpace()
                if i < s.count, s[i] == "]" { i += 1; break }   // a trailing comma
                continue
            }
            guard s[i] == "]" else { throw bad("expected ',' or ']'") }
            i += 1
            break
        }
        skipSpace()
        guard i == s.count else { throw bad("text after ']'") }
        return out

        func quoted() throws -> String {
            let q = s[i]; i += 1
            var v = String.UnicodeScalarView()
            while i < s.count, s[i] != q {
                if s[i] != "\\" { v.append(s[i]); i += 1; continue }
                i += 1
                guard i < s.count else { throw bad("unterminated escape") }
                let e = s[i]; i += 1
                switch e {
                case "n": v.append("\n")
                case "t": v.append("\t")
                case "r": v.append("\r")
                case "0": v.append("\0")
                case "\\", "'", "\"": v.append(e)
                case "x", "u", "U":
                    let n = e == "x" ? 2 : (e == "u" ? 4 : 8)
                    guard i + n <= s.count, let code = UInt32(String(String.UnicodeScalarView(s[i..<i + n])), radix: 16),
                          let u = Unicode.Scalar(code) else { throw bad("bad \\\(e) escape") }
                    v.append(u); i += n
                default: v.append("\\"); v.append(e)   // Python keeps unknown escapes as written
                }
            }
            guard i < s.count else { throw bad("unterminated string") }
            i += 1
            return String(v)
        }
        func number() throws -> String {
            let start = i
            while i < s.count, "+-0123456789.eE".unicodeScalars.contains(s[i]) { i += 1 }
            guard i > start else { throw bad("expected a string or a number") }
            return String(String.UnicodeScalarView(s[start..<i]))
        }
    }
}
