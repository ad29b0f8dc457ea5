import ArgumentParser
import Foundation
import SmolWeights
import SmolFormats
import SmolTokenizer

/// A tokenizer.json, or a GGUF file's embedded tokenizer.
func loadTokenizer(_ path: String) throws -> BPETokenizer { try PretrainedModel.loadTokenizer(path) }

struct TokenizerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenizer",
        abstract: "Byte-level BPE tokenizers from Hugging Face tokenizer.json.",
        subcommands: [Train.self, Encode.self, Decode.self])

    struct Train: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Train a byte-level BPE on text files and write a Hugging Face tokenizer.json.",
            discussion: "Example:\n  smol tokenizer train data/corpus/*.txt --vocab-size 2048 --special '<|endoftext|>' --out tok.json")
        @Argument(help: "UTF-8 text files.") var files: [String]
        @Option(help: "Vocabulary size, special tokens and the 256 bytes included.") var vocabSize: Int
        @Option(help: "A special token (repeatable); ids 0, 1, ... in order.") var special: [String] = ["<|endoftext|>"]
        @Option(help: "Pairs seen fewer times are never merged.") var minFrequency: Int = 2
        @Option(help: "Output tokenizer.json.") var out: String
        @Flag(help: "Print statistics as JSON.") var json = false

        func run() throws {
            try runReportingErrors {
                guard vocabSize >= 256 + special.count else { throw CLIError(message: "--vocab-size must be at least 256 + the special tokens") }
                let texts = try files.map { f -> String in
                    guard let d = FileManager.default.contents(atPath: f) else { throw CLIError(message: "\(f): cannot read file") }
                    guard let s = String(data: d, encoding: .utf8) else { throw CLIError(message: "\(f): not valid UTF-8") }
                    return s
                }
                var trainer = BPETrainer(vocabSize: vocabSize, specialTokens: special)
                trainer.minFrequency = minFrequency
                let r = trainer.train(texts: texts)
                try trainer.tokenizerJSON(r).write(to: URL(fileURLWithPath: out))
                struct Stats: Encodable { let out: String; let vocab_size: Int; let merges: Int }
                let stats = Stats(out: out, vocab_size: r.vocab.count, merges: r.merges.count)
                if json { printJSON(stats) } else { print("\(out): \(r.vocab.count) tokens, \(r.merges.count) merges") }
            }
        }
    }

    struct Encode: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Encode text (standard input, or --file) as one string.",
            discussion: "Example:\n  echo -n 'Hello world' | smol tokenizer encode --tokenizer tokenizer.json --json")
        @Option(help: "Path to tokenizer.json or a .gguf file.") var tokenizer: String
        @Option(help: "Read the text from this file instead of standard input.") var file: String?
        @Flag(help: "Print the ids as a JSON array.") var json = false
        @Flag(help: "Leave out the post-processor's special tokens (e.g. Llama 3's BOS), as add_special_tokens=False.")
        var noSpecialTokens = false

        func run() throws {
            try runReportingErrors {
                let t = try loadTokenizer(tokenizer)
                let data: Data
                if let file {
                    guard let d = FileManager.default.contents(atPath: file) else { throw CLIError(message: "\(file): cannot read file") }
                    data = d
                } else { data = FileHandle.standardInput.readDataToEndOfFile() }
                guard let text = String(data: data, encoding: .utf8) else { throw CLIError(message: "\(file ?? "<stdin>"): not valid UTF-8") }
                let ids = t.encode(text, addSpecialTokens: !noSpecialTokens)
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
