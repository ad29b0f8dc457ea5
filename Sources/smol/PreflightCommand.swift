import ArgumentParser
import Foundation
import SmolInfra
import SmolMPI

struct PreflightCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "preflight",
        abstract: "Short health check (GEMM, memory bandwidth, disk, all-reduce): PASS/FAIL per check, non-zero exit on FAIL.",
        discussion: """
        A rank fails a check when it is below --threshold × the expected figure, or below
        --threshold × the median of all ranks (under mpirun).

        Examples:
          smol preflight --expect-gemm-gflops 120
          mpirun -np 4 smol preflight --expect-allreduce-busbw 2 --json
        """)

    @Option(help: "Fraction of the expected (or median) figure below which a rank fails.") var threshold: Double = 0.8
    @Option(help: "Expected OpenBLAS sgemm GFLOP/s.") var expectGemmGflops: Double?
    @Option(help: "Expected STREAM triad GB/s.") var expectTriadGbps: Double?
    @Option(help: "Expected disk write+fsync MB/s.") var expectDiskMbps: Double?
    @Option(help: "Expected all-reduce bus bandwidth at 4 MiB, GB/s.") var expectAllreduceBusbw: Double?
    @Option(help: "Directory for the disk check.") var diskDir: String = "."
    @Flag(help: "JSON output (rank 0).") var json = false

    func run() throws {
        try runReportingErrors {
            guard threshold > 0 && threshold <= 1 else { throw CLIError(message: "--threshold must be in (0, 1]") }
            var o = PreflightOptions()
            o.threshold = threshold; o.expectedGemmGflops = expectGemmGflops; o.expectedTriadGBps = expectTriadGbps
            o.expectedDiskMBps = expectDiskMbps; o.expectedAllReduceBusGBps = expectAllreduceBusbw; o.diskDirectory = diskDir
            let comm = Communicator.launchedByMPI ? try Communicator() : nil
            defer { comm?.finalize() }
            let checks = try Preflight.run(comm: comm, options: o)
            let ok = checks.allSatisfy(\.pass)
            if (comm?.rank ?? 0) == 0 {
                if json {
                    struct Out: Encodable { let ranks: Int; let pass: Bool; let checks: [PreflightCheck] }
                    printJSON(Out(ranks: comm?.size ?? 1, pass: ok, checks: checks))
                } else {
                    print("preflight on \(comm?.size ?? 1) rank(s), threshold \(Int(threshold * 100))% of expected / median")
                    for c in checks {
                        let vals = c.values.enumerated().map { String(format: "r%d %.1f", $0.offset, $0.element) }.joined(separator: ", ")
                        let exp = c.expected.map { String(format: "expected %.1f", $0) } ?? String(format: "median %.1f", c.median)
                        let verdict = c.pass ? "PASS" : "FAIL (rank \(c.failingRanks.map(String.init).joined(separator: ", ")))"
                        print("\(verdict.padding(toLength: 16, withPad: " ", startingAt: 0)) \(c.name) [\(c.unit)]: \(vals); \(exp)")
                    }
                    print(ok ? "PASS" : "FAIL")
                }
                fflush(stdout)
            }
            if !ok { comm?.finalize(); throw ExitCode(1) }
        }
    }
}
