import ArgumentParser
import Foundation
import SmolTensor
import SmolTokenizer

extension BenchCommand {
    struct TokenizerBench: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "tokenizer",
            abstract: "Encode throughput (MB/s) of our BPE on one core and on all cores.",
            discussion: """
            Documents are the files' blank-line-separated blocks. Best of --repeats passes; word caches
            persist between passes (as Hugging Face's do). bench/tokenizer_bench.py prints this next to
            Hugging Face tokenizers on the same text.

            Example:
              smol bench tokenizer --tokenizer tok.json --file data/corpus/prose.txt --json
            """)
        @Option(help: "tokenizer.json or .gguf") var tokenizer: String
        @Option(help: "Text files (repeatable).") var file: [String]
        @Option(help: "Passes; the best is reported.") var repeats: Int = 3
        @Flag(help: "JSON output.") var json = false

        func run() throws {
            try runReportingErrors {
                guard repeats > 0, !file.isEmpty else { throw CLIError(message: "need --file and --repeats > 0") }
                let t = try loadTokenizer(tokenizer)
                var docs: [String] = []
                for f in file {
                    guard let d = FileManager.default.contents(atPath: f), let s = String(data: d, encoding: .utf8) else {
                        throw CLIError(message: "\(f): cannot read UTF-8 text")
                    }
                    docs += s.components(separatedBy: "\n\n")
                }
                let bytes = docs.reduce(0) { $0 + $1.utf8.count }
                func best(_ body: () -> Int) -> (seconds: Double, tokens: Int) {
                    var b = Double.infinity, n = 0
                    for _ in 0..<repeats {
                        let t0 = DispatchTime.now().uptimeNanoseconds
                        n = body()
                        b = min(b, Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9)
                    }
                    return (b, n)
                }
                let threads = Parallel.threads
                var caches = [BPETokenizer.WordCache](repeating: [:], count: threads)
                var counts = [Int](repeating: 0, count: threads)
                let all = best {
                    caches.withUnsafeMutableBufferPointer { cs in
                        counts.withUnsafeMutableBufferPointer { ns in
                            Parallel.chunks(docs.count) { p, r in
                                var n = 0
                                for i in r { n += t.encode(docs[i], cache: &cs[p]).count }
                                ns[p] = n
                            }
                        }
                    }
                    return counts.reduce(0, +)
                }
                // The all-core pass runs first, in a fresh process as `smol data prepare` does (the
                // one-core pass before it left the allocator's heap grown and the tables in cache).
                var single = BPETokenizer.WordCache()
                let one = best { docs.reduce(0) { $0 + t.encode($1, cache: &single).count } }
                struct Out: Encodable { let bytes: Int; let tokens: Int; let mbps_one_core: Double; let mbps_all_cores: Double; let threads: Int }
                let o = Out(bytes: bytes, tokens: one.tokens, mbps_one_core: Double(bytes) / one.seconds / 1e6,
                            mbps_all_cores: Double(bytes) / all.seconds / 1e6, threads: threads)
                if json { printJSON(o) } else {
                    print(String(format: "%d bytes, %d tokens: %.2f MB/s on one core, %.2f MB/s on %d cores", bytes, one.tokens,
                                 o.mbps_one_core, o.mbps_all_cores, threads))
                }
            }
        }
    }
}
