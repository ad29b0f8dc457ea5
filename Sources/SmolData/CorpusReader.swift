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

    /// .txt and .jsonl files, plain or compressed (.gz, .zst).
    public static func isCorpusFile(_ path: String) -> Bool {
        let name = CorpusInputStream.innerName(path)
        return name.hasSuffix(".txt") || name.hasSuffix(".jsonl")
    }

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
                    .filter { CorpusReader.isCorpusFile($0) }.sorted()
                if files.isEmpty { throw CorpusError(message: "\(input): directory holds no .txt or .jsonl file (plain, .gz or .zst)") }
                out += files.map { (input as NSString).appendingPathComponent($0) }
            } else { out.append(input) }
        }
        return out
    }

    /// Calls `body` with each accepted document of `file`, in order. The file is read in bounded
    /// chunks (decompressed when it ends in .gz or .zst), so memory does not grow with its size.
    public func read(file: String, rejections: inout Rejections, _ body: (RawDocument) throws -> Void) throws {
        func reject(_ reason: String, line: Int) throws {
            if strict { throw CorpusError(message: "\(file):\(line): \(reason)") }
            rejections.add(reason, at: "\(file):\(line)")
        }
        func accept(_ text: String, line: Int) throws {
            if text.utf8.count < max(minBytes, 1) || text.allSatisfy(\.isWhitespace) {
                try reject(text.allSatisfy(\.isWhitespace) ? "empty document" : "shorter than \(minBytes) bytes", line: line)
            } else { try body(RawDocument(text: text, location: "\(file):\(line)")) }
        }
        let input = try CorpusInputStream(path: file)
        let name = CorpusInputStream.innerName(file)
        if name.hasSuffix(".jsonl") {
            var line = 0
            try CorpusReader.records(input, delimiter: [0x0A]) { raw in
                line += 1
                let record = raw.last == 0x0D ? raw.dropLast() : raw
                if record.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { try reject("blank line", line: line); return }
                guard let text = String(validating: record, as: UTF8.self) else { try reject("invalid UTF-8", line: line); return }
                guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) else { try reject("malformed JSON", line: line); return }
                guard let dict = object as? [String: Any], let field = dict[textField] else { try reject("missing text field '\(textField)'", line: line); return }
                guard let value = field as? String else { try reject("text field '\(textField)' is not a string", line: line); return }
                try accept(value, line: line)
            }
            return
        }
        switch textSplit {
        case .wholeFile:
            var bytes: [UInt8] = []
            while case let chunk = try input.read(), !chunk.isEmpty { bytes += chunk }
            guard let text = String(validating: bytes, as: UTF8.self) else { try reject("invalid UTF-8", line: 1); return }
            try accept(text, line: 1)
        case .blankLines, .delimiter:
            let delimiter: [UInt8]
            if case let .delimiter(d) = textSplit { delimiter = Array(d.utf8) } else { delimiter = [0x0A, 0x0A] }
            let delimiterLines = delimiter.reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }
            var line = 1
            try CorpusReader.records(input, delimiter: delimiter) { block in
                let startLine = line + block.prefix { $0 == 0x0A }.count
                line += block.reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) } + delimiterLines
                let trimmed = block.drop { $0 == 0x0A || $0 == 0x0D }.reversed().drop { $0 == 0x0A || $0 == 0x0D }.reversed()
                if trimmed.isEmpty { return }   // runs of blank lines separate documents; they are not documents
                guard let text = String(validating: Array(trimmed), as: UTF8.self) else { try reject("invalid UTF-8", line: startLine); return }
                try accept(text, line: startLine)
            }
        }
    }

    /// Every record of `input` split at `delimiter`, streamed chunk by chunk.
    public static func records(_ input: CorpusInputStream, delimiter: [UInt8], _ body: (ArraySlice<UInt8>) throws -> Void) throws {
        var splitter = RecordSplitter(delimiter: delimiter)
        while case let chunk = try input.read(), !chunk.isEmpty { try splitter.feed(chunk, body) }
        try splitter.finish(body)
    }
}
