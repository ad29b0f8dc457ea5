import ArgumentParser
import Foundation
import SmolMPI
import SmolTensor
import SmolTrainer

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks.",
        subcommands: [Train.self, Hardware.self, Collectives.self, TokenizerBench.self, Generate.self])

    struct Train: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Training throughput, MFU and peak memory for the tiny and SmolLM2-135M shapes.",
            discussion: """
            Each shape runs in its own process so that its peak RSS is its own. Compare with
            PyTorch eager on the same machine: bench/train_bench.py prints both, interleaved.

            Examples:
              smol bench train
              smol bench train --shape tiny --steps 5 --json
              smol bench train --shape smollm2-135m --objective dpo   (beside --objective sft: bench/preference_bench.py)
              smol bench train --precision bf16 --shape tiny --json   (bf16 GEMMs: AVX512-BF16)
            """)

        @Option(help: "Shape to run: tiny, smollm2-135m, or all.") var shape: String = "all"
        @Option(help: "Timed steps per shape (the median is reported).") var steps: Int = 3
        @Option(help: "Peak GFLOP/s for MFU (default: measured by a GEMM probe).") var peakGflops: Double?
        @Flag(help: "One JSON object per shape.") var json = false
        @Flag(help: .hidden) var inProcess = false
        @Option(help: "Under mpirun: ZeRO stage of the data-parallel step (0 or 1).") var zero: Int = 0
        @Option(help: "Under mpirun: tensor-parallel ranks per model (the rest of the world is data parallel).") var tp: Int = 1
        @Option(help: "Objective of the step: pretrain, or sft, dpo, apo_zero, apo_down on rows of two documents (a pair).") var objective: TrainingObjective = .pretrain
        @Option(help: "Distil from a teacher of the same shape: whole (its whole distribution) or a top-k count.") var distill: String?
        @Option(help: "GEMM input format: fp32, or bf16 (AVX512-BF16; fp32 with a notice on CPUs without it).") var precision: MatmulPrecision = .fp32

        func validate() throws {
            if tp < 1 { throw ValidationError("--tp must be ≥ 1, got \(tp)") }
            if tp > 1 && !Communicator.launchedByMPI { throw ValidationError("--tp \(tp) runs under mpirun (mpirun -np \(tp) smol bench train --tp \(tp))") }
            if let d = distill, d != "whole", (Int(d) ?? 0) < 1 { throw ValidationError("--distill is whole or a positive top-k count, got '\(d)'") }
            if distill != nil && objective.preference != nil { throw ValidationError("--distill goes with --objective pretrain or sft") }
        }

        /// Under mpirun: the world runs the shape as dp × tp; rank 0 prints per-rank and total tokens/s.
        func runDataParallel(_ comm: Communicator, peak: Double) throws {
            for name in (shape == "all" ? TrainBenchmark.shapes.map(\.name) : [shape]) {
                var r = try TrainBenchmark.run(TrainBenchmark.shapes.first { $0.name == name }!, steps: steps, peakGflops: peak,
                                               collectives: comm, tp: tp, zero: zero, precision: precision)
                r.peakRssBytes = peakResidentBytes()
                if Profiler.enabled && comm.rank == 0 { FileHandle.standardError.write(Data("profile of rank 0 (all steps):\n\(Profiler.report())\n".utf8)) }
                let all = try comm.allGather(Array(try JSONEncoder().encode(r))).map { try JSONDecoder().decode(TrainBenchmark.Result.self, from: Data($0)) }
                guard comm.rank == 0 else { continue }
                // Total: the global batch (one per data-parallel replica) over the slowest rank's step.
                let total = Double(r.batch * r.seqLen * (comm.size / tp)) / (all.map(\.secondsPerStep).max() ?? r.secondsPerStep)
                if json {
                    struct Out: Encodable {
                        let shape: String; let world_size: Int; let dp: Int; let tp: Int; let zero: Int
                        let total_tokens_per_s: Double; let ranks: [TrainBenchmark.Result]
                    }
                    printJSON(Out(shape: name, world_size: comm.size, dp: comm.size / tp, tp: tp, zero: zero, total_tokens_per_s: total, ranks: all))
                } else {
                    print("\(name): \(comm.size) ranks = dp \(comm.size / tp) × tp \(tp), \(r.threads) thread(s) each, ZeRO-\(zero), \(r.batch)×\(r.seqLen) tokens per model replica per step")
                    for (i, x) in all.enumerated() {
                        print(String(format: "  rank %d  %8.1f tok/s  communication %4.1f%% of the step  peak RSS %.2f GB", i, x.tokensPerSecond,
                                     x.communicationShare * 100, Double(x.peakRssBytes) / 1e9))
                    }
                    print(String(format: "  total  %8.1f tok/s", total))
                }
            }
        }

        func run() throws {
            try runReportingErrors {
                let names = TrainBenchmark.shapes.map(\.name)
                let chosen = shape == "all" ? names : [shape]
                for n in chosen where !names.contains(n) { throw CLIError(message: "unknown shape '\(n)' (known: \(names.joined(separator: ", ")), all)") }
                guard steps > 0 else { throw CLIError(message: "--steps must be positive") }
                let peak = peakGflops ?? PeakProbe.gemmGflops(kernel: MatmulPrecision.resolve(precision).precision == .bf16 ? .bf16 : .openBLAS)
                if Communicator.launchedByMPI {
                    let comm = try Communicator()
                    defer { comm.finalize() }
                    try runDataParallel(comm, peak: peak)
                    return
                }
                if inProcess {
                    var r = try TrainBenchmark.run(TrainBenchmark.shapes.first { $0.name == chosen[0] }!, steps: steps, peakGflops: peak, objective: objective,
                                                   distill: distill.map { (topK: Int($0), ()) }, precision: precision)
                    r.peakRssBytes = peakResidentBytes()
                    printJSON(r)
                    if Profiler.enabled { FileHandle.standardError.write(Data("profile of \(r.name) (all steps):\n\(Profiler.report())\n".utf8)) }
                    return
                }
                if !json {
                    print(String(format: "threads %d, OpenBLAS %@ kernels, peak %.1f GFLOP/s (%@)", Parallel.threads, BLAS.coreName, peak,
                                 peakGflops == nil ? (MatmulPrecision.resolve(precision).precision == .bf16 ? "measured by a 2048³ bf16 GEMM probe" : "measured by a 2048³ sgemm probe") : "given"))
                    if let w = BLAS.narrowKernelWarning() { print("note: \(w)") }
                    if let notice = MatmulPrecision.resolve(precision).notice { print(notice) }
                    print("shape          batch×seq   params     tokens/s   model GFLOP/s   MFU     peak RSS")
                }
                for name in chosen {
                    let p = Process()
                    p.executableURL = URL(fileURLWithPath: CommandLine.arguments[0].contains("/") ? CommandLine.arguments[0] : "/proc/self/exe")
                    p.arguments = ["bench", "train", "--shape", name, "--steps", String(steps), "--peak-gflops", String(peak), "--objective", objective.rawValue,
                                   "--precision", precision.rawValue, "--in-process"]
                        + (distill.map { ["--distill", $0] } ?? [])
                    let pipe = Pipe()
                    p.standardOutput = pipe
                    try p.run()
                    let data = pipe.fileHandleForReading.readDataToEndOfFile()
                    p.waitUntilExit()
                    guard p.terminationStatus == 0,
                          let r = try? JSONDecoder().decode(TrainBenchmark.Result.self, from: data) else {
                        throw CLIError(message: "benchmark of \(name) failed (exit \(p.terminationStatus))")
                    }
                    if json { printJSON(r) } else {
                        var line = r.name.padding(toLength: 15, withPad: " ", startingAt: 0)
                        line += "\(r.batch)×\(r.seqLen)".padding(toLength: 12, withPad: " ", startingAt: 0)
                        line += formatCount(r.parameters).padding(toLength: 11, withPad: " ", startingAt: 0)
                        line += String(format: "%8.1f   %8.1f        %5.1f%%  %.2f GB", r.tokensPerSecond, r.modelGflops, r.mfu * 100, Double(r.peakRssBytes) / 1e9)
                        if let s = r.referenceSecondsPerStep { line += String(format: "  (reference: %.3f s per step's pairs, once)", s) }
                        if r.precision == .bf16 { line += "  (bf16 GEMMs)" }
                        if let d = r.distill { line += String(format: "  (distilling, %@: teacher %.1f%% of the step)", d, (r.teacherShare ?? 0) * 100) }
                        print(line)
                    }
                    fflush(stdout)
                }
            }
        }
    }
}

extension TrainingObjective: ExpressibleByArgument {}
extension MatmulPrecision: ExpressibleByArgument {
    /// The precision this process runs for this request, its one-line fallback notice on stderr.
    func resolvedSayingWhy() -> MatmulPrecision {
        let (precision, notice) = MatmulPrecision.resolve(self)
        if let notice { FileHandle.standardError.write((notice + "\n").data(using: .utf8)!) }
        return precision
    }
}
