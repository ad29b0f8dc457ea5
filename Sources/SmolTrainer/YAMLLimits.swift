import Foundation
import SmolModel

/// Limits checked on YAML text before it reaches the parser: libyaml recurses once per nesting
/// level (20,000 nested `[` overflow the stack) and expands every alias into a copy (a "billion
/// laughs" of nested aliases never finishes). Configs and task files need neither.
public enum YAMLLimits {
    public static let maxDepth = 64
    public static let maxAliases = 64

    /// Throws, naming the file and line, when `text` nests deeper than `maxDepth` (flow brackets,
    /// or block indentation in steps of at least one space) or uses more than `maxAliases` aliases.
    public static func check(_ text: String, path: String) throws {
        var flow = 0, aliases = 0, line = 1
        var quote: Character?
        var atLineStart = true, indent = 0
        var previous: Character = "\n"
        var comment = false
        for ch in text {
            if ch == "\n" {
                line += 1; atLineStart = true; indent = 0; comment = false; previous = ch
                if quote == "'" || quote == "\"" { }   // multi-line quoted scalars keep their quote
                continue
            }
            if comment { continue }
            if atLineStart {
                if ch == " " { indent += 1; if indent > maxDepth * 8 { throw deep(path, line) }; continue }
                atLineStart = false
            }
            if let q = quote {
                if ch == q { quote = nil }
                previous = ch
                continue
            }
            switch ch {
            case "#" where previous == " " || previous == "\n" || previous == "\t": comment = true
            case "'", "\"": quote = ch
            case "[", "{":
                flow += 1
                if flow > maxDepth { throw deep(path, line) }
            case "]", "}": flow = max(0, flow - 1)
            case "*" where previous == " " || previous == "[" || previous == "," || previous == ":" || previous == "-" || previous == "\n":
                aliases += 1
                if aliases > maxAliases {
                    throw ConfigError.invalidFile(path: path, reason: "line \(line): more than \(maxAliases) YAML aliases (*name); expanding them could take without limit")
                }
            default: break
            }
            previous = ch
        }
    }

    static func deep(_ path: String, _ line: Int) -> ConfigError {
        .invalidFile(path: path, reason: "line \(line): YAML nested deeper than \(maxDepth) levels")
    }
}
