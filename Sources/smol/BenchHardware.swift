import ArgumentParser
import Foundation
import SmolInfra
import SmolTensor

extension BenchCommand {
    struct Hardware: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "hw",
            abstract: "Memory bandwidth (STREAM), matmul throughput (OpenBLAS and our Swift kernel), disk with fsync.",
            discussion: """
            The float32 peak is derived from the CPU (cores × clock × SIMD lanes × 2 × FMA units) and
            shown; memory and disk percentages need their theoretical figures (--mem-peak-gbps,
            --disk-peak-mbps) since a VM does not expose them.

            Examples:
              smol bench hw
              smol bench hw --disk-mb 1024 --disk-dir /scratch --json
            """)

        @Option(help: "STREAM array size in MB (each of three arrays; ≥ 4 × last-level cache).") var streamMb: Int = 160
        @Option(help: "GEMM size n for n³ matmuls.") var gemmN: Int = 2048
        @Option(help: "Bytes to write and read back, in MB (a checkpoint's size).") var diskMb: Int = 512
        @Option(help: "Directory for the disk test.") var diskDir: String = "."
        @Option(help: "Core clock in GHz for the peak (default: /proc/cpuinfo).") var clockGhz: Double?
        @Option(help: "FMA units per core for the peak.") var fmaUnits: Int = 2
        @Option(help: "Theoretical memory bandwidth, GB/s, for percentages.") var memPeakGbps: Double?
        @Option(help: "Theoretical disk bandwidth, MB/s, for percentages.") var diskPeakMbps: Double?
        @Flag(help: "JSON output.") var json = false

        func run() throws {
            try runReportingErrors {
                guard streamMb > 0, gemmN > 0, diskMb > 0, fmaUnits > 0 else { throw CLIError(message: "sizes must be positive") }
                let peak = CPUPeak.detect(clockGHz: clockGhz, fmaUnits: fmaUnits)
                var rows: [HardwareResult] = []
                func pct(_ v: Double, _ of: Double?) -> Double? { of.map { 100 * v / $0 } }
                for s in HardwareBench.stream(n: streamMb * 1_000_000 / 8) {
                    rows.append(HardwareResult(name: "stream \(s.name)", value: s.mbps / 1000, unit: "GB/s",
                                               percentOfTheoretical: pct(s.mbps / 1000, memPeakGbps), note: "best of 10, \(streamMb) MB arrays"))
                }
                let blas = PeakProbe.gemmGflops(n: gemmN, repeats: 3)
                rows.append(HardwareResult(name: "sgemm OpenBLAS", value: blas, unit: "GFLOP/s", percentOfTheoretical: 100 * blas / peak.gflops,
                                           note: "\(gemmN)³, best of 3, \(BLAS.coreName) kernels"))
                let oursN = min(gemmN, 1024)
                let ours = PeakProbe.gemmGflops(n: oursN, repeats: 3, kernel: .swiftSIMD)
                rows.append(HardwareResult(name: "sgemm Swift SIMD", value: ours, unit: "GFLOP/s", percentOfTheoretical: 100 * ours / peak.gflops,
                                           note: "\(oursN)³, best of 3"))
                let d = try HardwareBench.disk(directory: diskDir, bytes: diskMb << 20)
                rows.append(HardwareResult(name: "disk write+fsync", value: d.write, unit: "MB/s", percentOfTheoretical: pct(d.write, diskPeakMbps), note: "\(diskMb) MB in \(diskDir)"))
                rows.append(HardwareResult(name: "disk read", value: d.read, unit: "MB/s", percentOfTheoretical: pct(d.read, diskPeakMbps), note: "after evicting the page cache"))
                if json {
                    struct Out: Encodable {
                        let peak: CPUPeak; let results: [HardwareResult]; let blasCore: String; let blasWarning: String?
                        enum CodingKeys: String, CodingKey { case peak, results, blasCore = "blas_core", blasWarning = "blas_warning" }
                    }
                    printJSON(Out(peak: peak, results: rows, blasCore: BLAS.coreName, blasWarning: BLAS.narrowKernelWarning())); return
                }
                print("peak: \(peak.derivation)")
                if let w = BLAS.narrowKernelWarning() { print("note: \(w)") }
                print("test                 value        unit      % of theoretical   note")
                for r in rows {
                    let p = r.percentOfTheoretical.map { String(format: "%6.1f%%", $0) } ?? "   n/a "
                    print(r.name.padding(toLength: 20, withPad: " ", startingAt: 0) + String(format: " %10.1f   ", r.value)
                          + r.unit.padding(toLength: 9, withPad: " ", startingAt: 0) + " " + p + "            " + r.note)
                }
            }
        }
    }
}
