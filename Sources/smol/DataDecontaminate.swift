import ArgumentParser
import Foundation
import SmolData
import SmolEval
import SmolTrainer

extension DataCommand {
    struct Decontaminate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Find training documents that share word n-grams with evaluation items.",
            discussion: """
            Reads training documents as `smol data prepare` does (.txt/.jsonl files, directories, globs)
            and evaluation items from --tasks files (JSONL or a JSON array; every string field of a record
            is part of the item). Text is NFKC-normalised, lower-cased, stripped of combining marks and
            punctuation. Reports, per task, how many items are touched and by which documents; --clean
            writes the documents that touch no item to a JSONL file ({"text": ...}). Exit status 0 either way.

            Example:
              smol data decontaminate data/corpus/prose.txt --tasks tasks/arc_easy.jsonl --n 13 --clean prose.clean.jsonl
            """)

        @Argument(help: "Training documents: files, directories or glob patterns.") var inputs: [String]
        @Option(parsing: .upToNextOption, help: "Evaluation task files (JSONL).") var tasks: [String]
        @Option(help: "n-gram length in words.") var n: Int = 13
        @Option(help: "Items with fewer words are reported as too short to check.") var minWords: Int = 8
        @Option(help: "JSONL field holding a document's text in .jsonl inputs.") var textField = "text"
        @Flag(help: "One document per .txt file instead of one per blank-line-separated block.") var perFile = false
        @Option(help: "Split .txt documents at this text instead of at blank lines.") var delimiter: String?
        @Option(help: "Write the documents that touch no item here, as JSONL.") var clean: String?
        @Flag(help: "Record the result beside each input file (FILE.decontamination.json: per task, how many items its documents touch) and beside the --clean output, so runs trained on them carry it in their provenance.") var mark = false
        @Flag(help: "Print the report as JSON.") var json = false

        func run() throws {
            try runReportingErrors {
                guard n > 0, minWords > 0 else { throw CLIError(message: "--n and --min-words must be positive") }
                guard !tasks.isEmpty else { throw CLIError(message: "--tasks names no file") }
                let items = try tasks.flatMap { try Decontamination.loadItems(path: $0) }
                let check = Decontamination(items: items, n: n, minWords: minWords)
                var reader = CorpusReader()
                reader.textField = textField
                reader.textSplit = perFile ? .wholeFile : delimiter.map { .delimiter($0) } ?? .blankLines
                var rejections = Rejections()
                var hits: [Decontamination.Hit] = [], documents = 0, contaminated = 0, kept = Data()
                var touchedByFile: [String: Set<Int>] = [:]
                let files = try CorpusReader.expand(inputs)
                for file in files {
                    touchedByFile[file] = []
                    try reader.read(file: file, rejections: &rejections) { doc in
                        documents += 1
                        let touched = check.touchedItems(doc.text)
                        touchedByFile[file]!.formUnion(touched)
                        for k in touched.sorted() { hits.append(.init(task: items[k].task, item: items[k].index, document: doc.location)) }
                        if touched.isEmpty {
                            if clean != nil { kept += try JSONSerialization.data(withJSONObject: ["text": doc.text]); kept += Data("\n".utf8) }
                        } else { contaminated += 1 }
                    }
                }
                if let clean {
                    let tmp = clean + ".tmp"
                    guard FileManager.default.createFile(atPath: tmp, contents: kept), rename(tmp, clean) == 0 else {
                        throw CLIError(message: "\(clean): cannot write the cleaned copy")
                    }
                }
                if mark {
                    // Per task file: its name (the file's stem, as decontamination names it) and the SHA-256 `smol eval` records.
                    let taskFiles = try tasks.map { t -> (name: String, sha: String, items: Int) in
                        guard let data = FileManager.default.contents(atPath: t) else { throw CLIError(message: "\(t): cannot read file") }
                        return (((t as NSString).lastPathComponent as NSString).deletingPathExtension, sha256Hex(data), items.filter { $0.task == ((t as NSString).lastPathComponent as NSString).deletingPathExtension }.count)
                    }
                    func marks(_ touched: Set<Int>, clean: Bool) -> [DecontaminationMark] {
                        taskFiles.map { t in
                            let k = touched.filter { items[$0].task == t.name }.count
                            return DecontaminationMark(task: t.name, itemsSha256: t.sha, items: t.items, touched: k, n: n,
                                                       status: clean ? "decontaminated" : (k > 0 ? "overlaps" : "clean"))
                        }
                    }
                    for file in files { try DecontaminationMark.write(marks(touchedByFile[file] ?? [], clean: false), beside: file) }
                    if let clean { try DecontaminationMark.write(marks(Set(touchedByFile.values.flatMap { $0 }), clean: true), beside: clean) }
                }
                struct Report: Encodable {
                    let n: Int; let documents: Int; let contaminated_documents: Int; let tasks: [Decontamination.TaskReport]
                    let hits: [Decontamination.Hit]; let rejected: Rejections; let clean: String?
                }
                let report = Report(n: n, documents: documents, contaminated_documents: contaminated, tasks: check.reports(hits: hits),
                                    hits: hits, rejected: rejections, clean: clean)
                if json { printJSON(report); return }
                print("\(documents) documents, \(contaminated) share a \(n)-gram with an evaluation item")
                for t in report.tasks {
                    print("  \(t.task): \(t.touched) of \(t.items) items touched\(t.tooShort > 0 ? " (\(t.tooShort) too short to check)" : "")")
                    for h in hits.filter({ $0.task == t.task }).prefix(10) { print("    item \(h.item) ← \(h.document)") }
                }
                if let clean { print("cleaned copy: \(clean) (\(documents - contaminated) documents)") }
            }
        }
    }
}
