import ArgumentParser
import Foundation
import SmolInfra
import SmolMPI

/// "8", "64K", "1M", "1G" -> bytes
func parseSize(_ s: String) throws -> Int {
    let units: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]
    var body = s.uppercased(), mult = 1
    if let u = body.last, let m = units[u] { mult = m; body.removeLast() }
    guard let v = Int(body), v > 0 else { throw CLIError(message: "invalid size '\(s)' (examples: 8, 64K, 16M)") }
    return v * mult
}

extension BenchCommand {
    struct Collectives: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "collectives",
            abstract: "MPI collectives in nccl-tests' format: time, algbw, busbw, #wrong; wrapper overhead vs plain C.",
            discussion: """
            Run under Open MPI (as root add --allow-run-as-root; with more ranks than cores --oversubscribe):
              mpirun -np 2 smol bench collectives -b 8 -e 16M -f 4
              mpirun --allow-run-as-root --oversubscribe -np 4 smol bench collectives --op all_reduce --json
            busbw = algbw × 2(n−1)/n for all_reduce, (n−1)/n for all_gather, reduce_scatter and alltoall,
            1 for broadcast and sendrecv. Inputs are small integers, so results are checked bit for bit.
            """)

        @Option(help: "Collective: all_reduce, all_gather, reduce_scatter, broadcast, alltoall, sendrecv, or all.") var op: String = "all"
        @Option(name: .customShort("b"), help: "Smallest size in bytes (K, M, G suffixes).") var minBytes: String = "8"
        @Option(name: .customShort("e"), help: "Largest size in bytes.") var maxBytes: String = "4M"
        @Option(name: .customShort("f"), help: "Multiplication factor between sizes.") var factor: Int = 4
        @Option(name: .customShort("n"), help: "Timed iterations per size.") var iterations: Int = 20
        @Option(name: .customShort("w"), help: "Warm-up iterations per size.") var warmup: Int = 5
        @Option(name: .customShort("c"), help: "Checked iterations per size.") var checks: Int = 1
        @Flag(help: "Skip the comparison with the plain C loop.") var noOverhead = false
        @Flag(help: "JSON output (rank 0).") var json = false

        func run() throws {
            try runReportingErrors {
                let ops = op == "all" ? Collective.allCases : [try Collective(rawValue: op).orThrow(CLIError(message: "unknown --op '\(op)'"))]
                var o = CollectiveOptions()
                o.minBytes = try parseSize(minBytes); o.maxBytes = try parseSize(maxBytes); o.factor = factor
                o.iterations = iterations; o.warmup = warmup; o.checks = checks
                guard o.minBytes <= o.maxBytes, factor >= 1, iterations > 0, warmup >= 0, checks >= 1 else {
                    throw CLIError(message: "need -b ≤ -e, -f ≥ 1, -n > 0, -w ≥ 0, -c ≥ 1")
                }
                let comm = try Communicator()
                defer { comm.finalize() }
                let bench = CollectiveBench(comm: comm, options: o)
                var all: [CollectiveRow] = [], overheads: [CollectiveOverhead] = []
                if comm.rank == 0 && !json {
                    print("# smol bench collectives: \(comm.size) ranks, float32, sum, -b \(o.minBytes) -e \(o.maxBytes) -f \(factor) -n \(iterations) -w \(warmup) -c \(checks)")
                }
                for c in ops {
                    let rows = try bench.sweep(c)
                    all += rows
                    if comm.rank == 0 && !json {
                        print("#\n# \(c.rawValue)")
                        print("#        size         count   type   redop    root     time   algbw   busbw  #wrong")
                        print("#         (B)    (elements)                            (us)  (GB/s)  (GB/s)")
                        for r in rows {
                            let redop = [.allReduce, .reduceScatter].contains(c) ? "sum" : "none"
                            let root = c == .broadcast ? "0" : "-1"
                            print(String(format: "%14d  %12d  %5@  %6@  %6@  %8.1f  %6.2f  %6.2f  %6d", r.bytes, r.count, "float" as NSString,
                                         redop as NSString, root as NSString, r.timeMicroseconds, r.algbw, r.busbw, r.wrong))
                        }
                    }
                    if !noOverhead, let largest = rows.last { overheads.append(try bench.overhead(c, bytes: largest.bytes)) }
                }
                let wrong = all.reduce(0) { $0 + $1.wrong }
                let avg = all.isEmpty ? 0 : all.reduce(0) { $0 + $1.busbw } / Double(all.count)
                if comm.rank == 0 {
                    if json {
                        struct Out: Encodable { let ranks: Int; let rows: [CollectiveRow]; let overhead: [CollectiveOverhead]; let wrong: Int; let avg_busbw: Double }
                        printJSON(Out(ranks: comm.size, rows: all, overhead: overheads, wrong: wrong, avg_busbw: avg))
                    } else {
                        print("# Out of bounds values : \(wrong) \(wrong == 0 ? "OK" : "FAILED")")
                        print(String(format: "# Avg bus bandwidth    : %.4f", avg))
                        for o in overheads {
                            print(String(format: "# wrapper overhead vs plain C, %@ at %d B: %.1f us vs %.1f us (%+.1f%%)",
                                         o.op.rawValue as NSString, o.bytes, o.swiftMicroseconds, o.cMicroseconds, o.percent))
                        }
                    }
                    fflush(stdout)
                }
                if wrong > 0 { comm.finalize(); throw ExitCode(1) }
            }
        }
    }
}

extension Optional {
    func orThrow(_ e: Error) throws -> Wrapped { guard let v = self else { throw e }; return v }
}
