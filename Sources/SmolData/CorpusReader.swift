import Foundation

/// One training document read from a corpus file, with where it came from ("file:line").
public struct RawDocument: Sendable {
    public let text: String
    public let location: String
    public let line: Int
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

    /// Sets the count of `reason` (its first locations already added).
    mutating func addUncounted(_ reason: String, count: Int) {
        var r = reasons[reason] ?? Reason()
        r.count = count
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

    /// One record of a corpus file before it is checked: a JSONL line, a .txt block, or a whole file.
    public struct RawRecord: Sendable {
        public var bytes: [UInt8]
        public var line: Int
        public var json: Bool
    }

    /// Calls `body` with each record of `file`, in order, reading it in bounded chunks (decompressed
    /// when it ends in .gz or .zst), so memory does not grow with its size. Runs of blank lines
    /// between .txt blocks are not records.
    /// With `range`, only those bytes of a plain file (a piece of `InputSplit`, which cuts only where
    /// whole-file splitting would), lines counted from 1 at its start; returns the newline bytes read.
    @discardableResult
    public func records(file: String, range: Range<Int>? = nil, _ body: (RawRecord) throws -> Void) throws -> Int {
        let input = try CorpusInputStream(path: file, range: range)
        input.countNewlines = range != nil
        if CorpusInputStream.innerName(file).hasSuffix(".jsonl") {
            var line = 0
            try CorpusReader.records(input, delimiter: [0x0A]) { raw in
                line += 1
                try body(RawRecord(bytes: Array(raw.last == 0x0D ? raw.dropLast() : raw), line: line, json: true))
            }
            return input.newlines
        }
        switch textSplit {
        case .wholeFile:
            var bytes: [UInt8] = []
            while case let chunk = try input.read(), !chunk.isEmpty { bytes += chunk }
            try body(RawRecord(bytes: bytes, line: 1, json: false))
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
                try body(RawRecord(bytes: Array(trimmed), line: startLine, json: false))
            }
        }
        return input.newlines
    }

    /// A record's document text, or why it is rejected. Safe to call from any thread.
    public func document(_ r: RawRecord) -> Result<String, CorpusError> {
        func bad(_ reason: String) -> Result<String, CorpusError> { .failure(CorpusError(message: reason)) }
        if r.json && r.bytes.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { return bad("blank line") }
        guard let text = String(validating: r.bytes, as: UTF8.self) else { return bad("invalid UTF-8") }
        var document = text
        if r.json {
            switch JSONTextField.extract(r.bytes, field: textField) {
            case .malformed: return bad("malformed JSON")
            case .missing: return bad("missing text field '\(textField)'")
            case .notString: return bad("text field '\(textField)' is not a string")
            case let .text(value): document = value
            }
        }
        if document.allSatisfy(\.isWhitespace) { return bad("empty document") }
        if document.utf8.count < max(minBytes, 1) { return bad("shorter than \(minBytes) bytes") }
        return .success(document)
    }

    /// Calls `body` with each accepted document of `file`, in order; bad records are counted in
    /// `rejections` (in strict mode the first is an error naming file and line).
    public func read(file: String, rejections: inout Rejections, _ body: (RawDocument) throws -> Void) throws {
        var rejected = Rejections()
        defer { rejections.merge(rejected) }
        try records(file: file) { r in
            switch document(r) {
            case let .success(text): try body(RawDocument(text: text, location: "\(file):\(r.line)", line: r.line))
            case let .failure(e):
                if strict { throw CorpusError(message: "\(file):\(r.line): \(e.message)") }
                rejected.add(e.message, at: "\(file):\(r.line)")
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
