import Foundation

/// One training document read from a corpus file, with where it came from ("file:line").
public struct RawDocument: Sendable {
    public let text: String
    public let location: String
}

/// Records skipped per reason, with the first few locations of each, so nothing is dropped silently.
public struct Rejections: Codable, Sendable {
    public struct Reason: Codable, Sendable {
        public var count = 0
        public var first: [String] = []
    }
    public private(set) var reasons: [String: Reason] = [:]
    public var total: Int { reasons.values.reduce(0) { $0 + $1.count } }
    public init() {}

    mutating func add(_ reason: String, at location: String) {
        var r = reasons[reason] ?? Reason()
        r.count += 1
        if r.first.count < 5 { r.first.append(location) }
        reasons[reason] = r
    }

    public mutating func merge(_ other: Rejections) {
        for (k, v) in other.reasons {
            var r = reasons[k] ?? Reason()
            r.count += v.count
            r.first = Array((r.first + v.first).prefix(5))
            reasons[k] = r
        }
    }
}

public struct CorpusError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// Reads documents from .txt and .jsonl files, directories (recursively) and glob patterns.
/// A .txt file is one document per blank-line-separated block, per delimiter, or whole; a .jsonl
/// file is one document per line, taken from `textField`. Bad records (invalid UTF-8, malformed JSON,
/// a missing or non-string text field, empty documents) are counted by reason; in strict mode the
/// first one is an error naming the file and line.
public struct CorpusReader {
    public enum TextSplit: Sendable { case blankLines, delimiter(String), wholeFile }

    public var textSplit: TextSplit = .blankLines
    public var textField = "text"
    public var minBytes = 1
    public var strict = false
    public init() {}

    /// The files named by `inputs`: files as given, directories walked for .txt/.jsonl files, and
    /// glob patterns expanded; sorted within each input so the order is reproducible.
    public static func expand(_ inputs: [String]) throws -> [String] {
        var out: [String] = []
        for input in inputs {
            if input.contains(where: { "*?[".contains($0) }) {
                let matches = globPaths(input)
                if matches.isEmpty { throw CorpusError(message: "\(input): the pattern matches no file") }
                out += try expand(matches)
                continue
            }
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: input, isDirectory: &isDir) else { throw CorpusError(message: "\(input): no such file or directory") }
            if isDir.boolValue {
                let files = (FileManager.default.enumerator(atPath: input)?.allObjects as? [String] ?? [])
                    .filter { $0.hasSuffix(".txt") || $0.hasSuffix(".jsonl") }.sorted()
                if files.isEmpty { throw CorpusError(message: "\(input): directory holds no .txt or .jsonl file") }
                out += files.map { (input as NSString).appendingPathComponent($0) }
            } else { out.append(input) }
        }
        return out
    }

    /// Calls `body` with each accepted document of `file`, in order.
    public func read(file: String, rejections: inout Rejections, _ body: (RawDocument) throws -> Void) throws {
        guard let data = FileManager.default.contents(atPath: file) else { throw CorpusError(message: "\(file): cannot read file") }
        let bytes = [UInt8](data)
        func reject(_ reason: String, line: Int) throws {
            if strict { throw CorpusError(message: "\(file):\(line): \(reason)") }
            rejections.add(reason, at: "\(file):\(line)")
        }
        func accept(_ text: String, line: Int) throws {
            if text.utf8.count < max(minBytes, 1) || text.allSatisfy(\.isWhitespace) {
                try reject(text.allSatisfy(\.isWhitespace) ? "empty document" : "shorter than \(minBytes) bytes", line: line)
            } else { try body(RawDocument(text: text, location: "\(file):\(line)")) }
        }
        if file.hasSuffix(".jsonl") {
            var line = 0
            for raw in split(bytes, on: [0x0A]) {
                line += 1
                let record = raw.last == 0x0D ? raw.dropLast() : raw[...]
                if record.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { try reject("blank line", line: line); continue }
                guard let text = String(validating: record, as: UTF8.self) else { try reject("invalid UTF-8", line: line); continue }
                guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) else { try reject("malformed JSON", line: line); continue }
                guard let dict = object as? [String: Any], let field = dict[textField] else { try reject("missing text field '\(textField)'", line: line); continue }
                guard let value = field as? String else { try reject("text field '\(textField)' is not a string", line: line); continue }
                try accept(value, line: line)
            }
            return
        }
        switch textSplit {
        case .wholeFile:
            guard let text = String(validating: bytes, as: UTF8.self) else { try reject("invalid UTF-8", line: 1); return }
            try accept(text, line: 1)
        case .blankLines, .delimiter:
            let delimiter: [UInt8]
            if case let .delimiter(d) = textSplit { delimiter = Array(d.utf8) } else { delimiter = [0x0A, 0x0A] }
            var line = 1
            for block in split(bytes, on: delimiter) {
                let startLine = line + block.prefix { $0 == 0x0A }.count
                line += block.reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) } + delimiter.reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }
                let trimmed = block.drop { $0 == 0x0A || $0 == 0x0D }.reversed().drop { $0 == 0x0A || $0 == 0x0D }.reversed()
                if trimmed.isEmpty { continue }   // runs of blank lines separate documents; they are not documents
                guard let text = String(validating: Array(trimmed), as: UTF8.self) else { try reject("invalid UTF-8", line: startLine); continue }
                try accept(text, line: startLine)
            }
        }
    }

    /// Splits bytes at each occurrence of `delimiter` (which is dropped); the last part may be empty.
    func split(_ bytes: [UInt8], on delimiter: [UInt8]) -> [ArraySlice<UInt8>] {
        var parts: [ArraySlice<UInt8>] = [], start = 0, i = 0
        let n = bytes.count, d = delimiter.count
        while i + d <= n {
            if bytes[i] == delimiter[0] && bytes[i..<(i + d)].elementsEqual(delimiter) {
                parts.append(bytes[start..<i]); i += d; start = i
            } else { i += 1 }
        }
        if start < n || parts.isEmpty { parts.append(bytes[start..<n]) }
        return parts
    }
}
