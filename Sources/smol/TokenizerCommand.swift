import ArgumentParser
import Foundation
import SmolFormats
import SmolTokenizer

/// A tokenizer.json, or a GGUF file's embedded tokenizer.
func loadTokenizer(_ path: String) throws -> BPETokenizer {
    path.hasSuffix(".gguf") ? try BPETokenizer(gguf: GGUFFile(path: path)) : try BPETokenizer(path: path)
}

struct TokenizerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenizer",
        abstract: "Byte-level BPE tokenizers from Hugging Face tokenizer.json.",
        subcommands: [Encode.self, Decode.self])

    struct Encode: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Encode text (standard input, or --file) as one string.",
            discussion: "Example:\n  echo -n 'Hello world' | smol tokenizer encode --tokenizer tokenizer.json --json")
        @Option(help: "Path to tokenizer.json or a .gguf file.") var tokenizer: String
        @Option(help: "Read the text from this file instead of standard input.") var file: String?
        @Flag(help: "Print the ids as a JSON array.") var json = false

        func run() throws {
            try runReportingErrors {
                let t = try loadTokenizer(tokenizer)
                let data: Data
                if let file {
                    guard let d = FileManager.default.contents(atPath: file) else { throw CLIError(message: "\(file): cannot read file") }
                    data = d
                } else { data = FileHandle.standardInput.readDataToEndOfFile() }
                guard let text = String(data: data, encoding: .utf8) else { throw CLIError(message: "\(file ?? "<stdin>"): not valid UTF-8") }
                let ids = t.encode(text)
                if json { printJSON(ids) } else { print(ids.map(String.init).joined(separator: " ")) }
            }
        }
    }

    struct Decode: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Decode ids (a JSON array or whitespace-separated, from standard input) to text.",
            discussion: "Example:\n  echo '[19556, 905]' | smol tokenizer decode --tokenizer tokenizer.json")
        @Option(help: "Path to tokenizer.json or a .gguf file.") var tokenizer: String
        @Flag(help: "Print {\"text\": ...} as JSON.") var json = false

        func run() throws {
            try runReportingErrors {
                let t = try loadTokenizer(tokenizer)
                let input = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
                let parts = input.split(whereSeparator: { " \n\t,[]".contains($0) })
                let ids = try parts.map { p -> Int32 in
                    guard let v = Int32(p), v >= 0, Int(v) < t.vocabSize else { throw CLIError(message: "invalid token id '\(p)'") }
                    return v
                }
                let text = t.decode(ids)
                if json { printJSON(["text": text]) } else { print(text, terminator: "") }
            }
        }
    }
}
