import ArgumentParser
import Foundation
import SmolData

extension DataCommand {
    /// `smol data dedup`: exact and MinHash near-duplicate removal over a corpus, keeping the first
    /// occurrence, with a report of what each source lost.
    struct Dedup: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "dedup",
            abstract: "Remove exact and near-duplicate documents (MinHash LSH, as datatrove does it).",
            discussion: """
            Reads INPUTS as `smol data prepare` does (.jsonl records' text field, .txt blocks) and
            writes OUT/NAME.jsonl per input file ({"text": ...} per kept document, in order) and
            OUT/dedup_report.json. Exact duplicates (same bytes) go first; then documents whose
            MinHash signatures (word n-grams, bands × rows hashes) agree on all rows of any band join
            one cluster, of which the first document is kept. Defaults: 5-grams, 14 bands of 8.

            Example:
              smol data dedup data/web/*.jsonl --out data/web-dedup
            """)

        @Argument(help: "Input files, directories or glob patterns.") var inputs: [String]
        @Option(help: "Output directory (created; must not hold a report already).") var out: String
        @Option(help: "JSONL field holding the document text.") var textField = "text"
        @Option(help: "Split .txt documents at this text instead of at blank lines.") var delimiter: String?
        @Option(help: "Words per shingle.") var ngram = 5
        @Option(help: "LSH bands.") var bands = 14
        @Option(help: "Hashes per band.") var rowsPerBand = 8
        @Option(help: "Seed of the hash permutations.") var seed: UInt64 = 1
        @Flag(help: "Replace an existing output directory's files.") var force = false

        func validate() throws {
            guard (1...64).contains(ngram) else { throw ValidationError("--ngram must be in 1...64") }
            guard (1...1024).contains(bands), (1...64).contains(rowsPerBand) else { throw ValidationError("--bands must be in 1...1024 and --rows-per-band in 1...64") }
        }

        func run() throws {
            try runReportingErrors {
                let files = try CorpusReader.expand(inputs)
                var reader = CorpusReader()
                reader.textField = textField
                if let d = delimiter { reader.textSplit = .delimiter(d) }
                let names = files.map { (($0 as NSString).lastPathComponent as NSString).deletingPathExtension }
                guard Set(names).count == names.count else { throw CLIError(message: "two inputs share the name '\(names.first { n in names.filter { $0 == n }.count > 1 }!)'; outputs would collide") }
                let fm = FileManager.default
                let reportPath = (out as NSString).appendingPathComponent("dedup_report.json")
                if fm.fileExists(atPath: reportPath) && !force { throw CLIError(message: "\(out) already holds a dedup output (--force replaces it)") }
                try fm.createDirectory(atPath: out, withIntermediateDirectories: true)

                // Two passes, so memory holds no document text: every document into the index,
                // then the input read again and the kept documents written.
                let params = MinHashDeduplicator.Parameters(ngram: ngram, bands: bands, rowsPerBand: rowsPerBand, seed: seed)
                var index = MinHashDeduplicator.Index(MinHashDeduplicator(params))
                var origin: [(file: Int32, line: Int32)] = []
                var rejections = Rejections()
                for (k, f) in files.enumerated() {
                    try reader.read(file: f, rejections: &rejections) { doc in
                        index.add(doc.text); origin.append((Int32(k), Int32(clamping: doc.line)))
                    }
                }
                let verdicts = index.verdicts()
                func location(_ i: Int) -> String { "\(files[Int(origin[i].file)]):\(origin[i].line)" }
                struct Source: Encodable {
                    var file: String, documents = 0, kept = 0, exactDuplicates = 0, nearDuplicates = 0
                    var removed: [[String: String]] = []
                    enum CodingKeys: String, CodingKey { case file, documents, kept, removed, exactDuplicates = "exact_duplicates", nearDuplicates = "near_duplicates" }
                }
                var sources = files.map { Source(file: $0) }
                var i = 0
                for (k, name) in names.enumerated() {
                    let path = (out as NSString).appendingPathComponent(name + ".jsonl")
                    guard fm.createFile(atPath: path + ".tmp", contents: nil), let handle = FileHandle(forWritingAtPath: path + ".tmp") else {
                        throw CLIError(message: "\(path): cannot write")
                    }
                    var buffer = Data()
                    func flush() throws {
                        do { try handle.write(contentsOf: buffer) } catch { throw CLIError(message: "\(path): cannot write (\(error))") }
                        buffer.removeAll(keepingCapacity: true)
                    }
                    var ignored = Rejections()
                    try reader.read(file: files[k], rejections: &ignored) { doc in
                        defer { i += 1 }
                        sources[k].documents += 1
                        switch verdicts[i] {
                        case .kept:
                            sources[k].kept += 1
                            buffer.append(try JSONSerialization.data(withJSONObject: ["text": doc.text], options: [.withoutEscapingSlashes]))
                            buffer.append(0x0A)
                            if buffer.count >= 1 << 20 { try flush() }
                        case .exactDuplicate(let j), .nearDuplicate(let j):
                            let exact = { if case .exactDuplicate = verdicts[i] { return true } else { return false } }()
                            if exact { sources[k].exactDuplicates += 1 } else { sources[k].nearDuplicates += 1 }
                            if sources[k].removed.count < 20 {
                                sources[k].removed.append(["document": location(i), "duplicate_of": location(j), "kind": exact ? "exact" : "near"])
                            }
                        }
                    }
                    try flush()
                    try handle.close()
                    guard rename(path + ".tmp", path) == 0 else { throw CLIError(message: "\(path): cannot write") }
                }
                guard i == verdicts.count else { throw CLIError(message: "the inputs changed while they were deduplicated (\(verdicts.count) documents, then \(i))") }
                struct Report: Encodable {
                    var parameters: MinHashDeduplicator.Parameters, documents: Int, kept: Int, exactDuplicates: Int, nearDuplicates: Int
                    var rejected: Rejections, sources: [Source]
                    enum CodingKeys: String, CodingKey { case parameters, documents, kept, rejected, sources, exactDuplicates = "exact_duplicates", nearDuplicates = "near_duplicates" }
                }
                let report = Report(parameters: params, documents: verdicts.count, kept: sources.reduce(0) { $0 + $1.kept },
                                    exactDuplicates: sources.reduce(0) { $0 + $1.exactDuplicates }, nearDuplicates: sources.reduce(0) { $0 + $1.nearDuplicates },
                                    rejected: rejections, sources: sources)
                let e = JSONEncoder(); e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                guard fm.createFile(atPath: reportPath, contents: try e.encode(report)) else { throw CLIError(message: "\(reportPath): cannot write") }
                print("\(verdicts.count) documents: kept \(report.kept), removed \(report.exactDuplicates) exact and \(report.nearDuplicates) near duplicates; wrote \(out)")
            }
        }
    }
}
