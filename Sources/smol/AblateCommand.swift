import ArgumentParser
import Foundation
import SmolRuns
import SmolTrainer

struct AblateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ablate",
        abstract: "Run an ablation sweep (variants × seeds) and report each variant against the baseline.",
        discussion: """
        SWEEP is a YAML file: base (a training config), seeds, baseline, metrics (val_loss,
        val_loss/SOURCE, task/metric), set (overrides for every run) and variants (name, set).
        Every run is an ordinary `smol train` recorded in the run store with the tag ablation.
        The report (report.md, report.json, one SVG per metric) gives each variant's mean and 95%
        interval over seeds, its difference from the baseline and a verdict against seed noise,
        and the compute ledger. Finished runs are reused when the sweep is run again.

        Examples:
          smol ablate configs/ablations/code_share.yaml --parallel 2
          smol ablate configs/ablations/tied_embeddings.yaml --out runs/ablations/tied
        """)

    @Argument(help: "Sweep file (YAML).") var sweep: String
    @Option(help: "Output directory (default runs/ablations/<sweep name>).") var out: String?
    @Option(help: "Trainings at once.") var parallel = 1
    @OptionGroup var options: StoreOptions
    @Flag(help: "Print the report as JSON.") var json = false

    func run() throws {
        try runReportingErrors {
            guard parallel >= 1 else { throw CLIError(message: "--parallel must be ≥ 1") }
            let spec = try AblationSweep.load(sweep)
            let root = out ?? "runs/ablations/\(spec.name)"
            let storePath = options.store ?? RunStore.defaultPath
            let store = try RunStore(path: storePath)
            let jobs = spec.jobs(outputRoot: root)
            // Reuse runs that already finished with this sweep's settings.
            let finished = Set(try store.runs().filter { $0.status == "finished" }.map(\.outputDir))
            let todo = jobs.filter { !finished.contains($0.outputDir) }
            let smol = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().path
            let self_ = ProcessInfo.processInfo.environment["SMOL_BIN"] ?? (FileManager.default.isExecutableFile(atPath: smol) ? smol : Bundle.main.executablePath ?? smol)
            var running: [(Process, AblationSweep.Job, FileHandle)] = []
            var failures: [String] = []
            func reap(_ block: Bool) {
                running.removeAll { p, job, log in
                    if block { p.waitUntilExit() }
                    guard !p.isRunning else { return false }
                    try? log.close()
                    if p.terminationStatus != 0 { failures.append("\(job.outputDir) (exit \(p.terminationStatus), see \(job.outputDir).log)") }
                    else if !json { print("done \(job.variant) seed \(job.seed)"); fflush(stdout) }
                    return true
                }
            }
            if !json { print("sweep \(spec.name): \(jobs.count) runs (\(jobs.count - todo.count) already done), \(parallel) at once"); fflush(stdout) }
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            for job in todo {
                while running.count >= parallel { reap(false); if running.count >= parallel { Thread.sleep(forTimeInterval: 0.2) } }
                let p = Process()
                p.executableURL = URL(fileURLWithPath: self_)
                // A run not done is started afresh (--force clears what a killed attempt left).
                p.arguments = ["train", spec.baseConfig, "--out", job.outputDir, "--store", storePath, "--tag", "ablation",
                               "--tag", "sweep:\(spec.name)", "--no-samples", "--force"] + job.overrides.flatMap { ["--set", $0] }
                FileManager.default.createFile(atPath: job.outputDir + ".log", contents: nil)
                let log = FileHandle(forWritingAtPath: job.outputDir + ".log")!
                p.standardOutput = log; p.standardError = log
                try p.run()
                running.append((p, job, log))
            }
            while !running.isEmpty { reap(true) }
            if !failures.isEmpty { throw CLIError(message: "runs failed: " + failures.joined(separator: "; ")) }

            let report = try AblationReport(sweep: spec, jobs: jobs, store: store)
            var plots: [String: String] = [:]
            for m in spec.metrics {
                var lines: [RunComparison.Line] = []
                for v in spec.variants {
                    let curves = try jobs.filter { $0.variant == v.name }.map { job -> [MetricPoint] in try store.series(run: try store.find(job.outputDir).id, metric: m) }
                    guard let grid = curves.first?.map({ Double($0.tokens) }), !grid.isEmpty else { continue }
                    let at = grid.map { x in curves.compactMap { c in interpolate(xs: c.map { Double($0.tokens) }, ys: c.map(\.value), at: x) } }
                    lines.append(RunComparison.Line(name: v.name + (v.name == spec.baseline ? " (baseline)" : ""), x: grid,
                                                    y: at.map { $0.reduce(0, +) / Double(max($0.count, 1)) },
                                                    lower: at.map { $0.min() ?? .nan }, upper: at.map { $0.max() ?? .nan }))
                }
                let file = m.replacingOccurrences(of: "/", with: "_") + ".svg"
                let svg = RunComparison(metric: m, axis: .tokens, lines: lines)
                    .svg(smoothing: 0, title: "\(spec.name): \(m) (mean over seeds, band = min–max)")
                try Data(svg.utf8).write(to: URL(fileURLWithPath: (root as NSString).appendingPathComponent(file)), options: .atomic)
                plots[m] = file
            }
            let md = report.markdown(plots: plots)
            try Data(md.utf8).write(to: URL(fileURLWithPath: (root as NSString).appendingPathComponent("report.md")), options: .atomic)
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys, .prettyPrinted]
            let data = try enc.encode(report)
            try data.write(to: URL(fileURLWithPath: (root as NSString).appendingPathComponent("report.json")), options: .atomic)
            print(json ? String(decoding: data, as: UTF8.self) : md)
        }
    }
}
