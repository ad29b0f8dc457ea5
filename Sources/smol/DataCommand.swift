import ArgumentParser
import Foundation
import SmolData

struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Prepare training data.",
        subcommands: [Prepare.self])

    struct Prepare: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Tokenise text files into a token shard (byte-level tokenizer).",
            discussion: """
            Each file is split into documents (by default at blank lines; --delimiter TEXT splits at
            TEXT; --per-file keeps each file whole); every document ends with <|endoftext|>. The shard format is in docs/FORMATS.md.

            Example:
              smol data prepare data/corpus/prose.txt --out data/shards/prose.bin
              smol data prepare data/corpus/code.txt --delimiter '<|endoftext|>' --out data/shards/code.bin
            """)

        @Argument(help: "Text files (UTF-8).") var files: [String]
        @Option(help: "Output shard path.") var out: String
        @Flag(help: "One document per file instead of one per blank-line-separated block.") var perFile = false
        @Option(help: "Split documents at this text instead of at blank lines, e.g. '<|endoftext|>'.") var delimiter: String?
        @Option(help: "Documents shorter than this many bytes are dropped.") var minBytes: Int = 1
        @Flag(help: "Print statistics as JSON.") var json = false

        func run() throws {
            try runReportingErrors {
                let tokenizer = ByteTokenizer()
                var documents: [[Int32]] = []
                var bytes = 0, rejectedShort = 0
                for file in files {
                    guard let data = FileManager.default.contents(atPath: file) else { throw CLIError(message: "\(file): cannot read file") }
                    guard let text = String(data: data, encoding: .utf8) else { throw CLIError(message: "\(file): not valid UTF-8") }
                    let parts = perFile ? [text] : text.components(separatedBy: delimiter ?? "\n\n")
                    for part in parts {
                        let doc = part.trimmingCharacters(in: .newlines)
                        if doc.utf8.count < max(minBytes, 1) { rejectedShort += 1; continue }
                        bytes += doc.utf8.count
                        documents.append(tokenizer.encode(doc) + [tokenizer.endOfText])
                    }
                }
                let dir = (out as NSString).deletingLastPathComponent
                if !dir.isEmpty { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
                try TokenShard.write(documents: documents, vocabSize: tokenizer.vocabSize, to: out)
                let tokens = documents.reduce(0) { $0 + $1.count }
                struct Stats: Encodable { let shard: String; let documents: Int; let tokens: Int; let bytes: Int; let rejected_short: Int }
                let stats = Stats(shard: out, documents: documents.count, tokens: tokens, bytes: bytes, rejected_short: rejectedShort)
                if json { printJSON(stats) } else {
                    print("\(out): \(documents.count) documents, \(tokens) tokens, \(bytes) bytes (\(rejectedShort) rejected as too short)")
                }
            }
        }
    }
}
