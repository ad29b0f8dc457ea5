import ArgumentParser
import Foundation
import SmolRuns
import SmolData

/// Options shared by the commands that read the run store.
struct StoreOptions: ParsableArguments {
    @Option(help: "Run store (default .smol/runs.sqlite, or $SMOL_STORE).") var store: String?
    func open() throws -> RunStore {
        let path = store ?? RunStore.defaultPath
        guard FileManager.default.fileExists(atPath: path) else { throw CLIError(message: "\(path): no run store yet (smol train creates it)") }
        return try RunStore(path: path)
    }
}

struct RunsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "runs",
        abstract: "List, show, diff and tag the runs in the run store.",
        discussion: """
        Every `smol train` is recorded in the run store (SQLite): config, tags, code version, host,
        start and end, status (running / finished / failed / crashed), compute in core-hours,
        metric series, evaluation results and events.

        Examples:
          smol runs list --tag ablation
          smol runs show demo
          smol runs diff 3 4
        """,
        subcommands: [List.self, Show.self, Diff.self, Tag.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One line per run.")
        @OptionGroup var options: StoreOptions
        @Option(help: "Only runs with this tag.") var tag: String?
        @Flag(help: "Print JSON.") var json = false
        func run() throws {
            try runReportingErrors {
                let runs = try options.open().runs(tag: tag)
                if json { printJSON(runs); return }
                print(padRight("id", 5) + padRight("name", 22) + padRight("status", 10) + padRight("tags", 18) + padRight("started", 21) + padRight("core-h", 9) + "output")
                let df = ISO8601DateFormatter()
                for r in runs {
                    print(padRight("\(r.id)", 5) + padRight(r.name, 22) + padRight(r.status, 10) + padRight(r.tags.joined(separator: ","), 18)
                          + padRight(df.string(from: Date(timeIntervalSince1970: r.startedAt)), 21) + padRight(String(format: "%.3f", r.coreHours), 9) + r.outputDir)
                }
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "A run's record, last metric values, evaluations and events.")
        @OptionGroup var options: StoreOptions
        @Argument(help: "Run id, name or output directory.") var key: String
        @Flag(help: "Print JSON.") var json = false
        func run() throws {
            try runReportingErrors {
                let store = try options.open()
                let r = try store.find(key)
                var last: [String: MetricPoint] = [:]
                for m in try store.metricNames(run: r.id) { if let p = try store.series(run: r.id, metric: m).last { last[m] = p } }
                let events = try store.events(run: r.id)
                let lineage = (try? JSONDecoder().decode([DataLineage].self, from: Data(r.dataLineage.utf8))) ?? []
                if json {
                    struct Out: Encodable { var run: RunRecord; var data: [DataLineage]; var last: [String: MetricPoint]; var events: [RunEvent] }
                    printJSON(Out(run: r, data: lineage, last: last, events: events)); return
                }
                print("run \(r.id) \(r.name) [\(r.status)] tags: \(r.tags.joined(separator: ", "))")
                print("output \(r.outputDir), code \(r.codeVersion), host \(r.host), \(r.cores) cores, \(String(format: "%.4f", r.coreHours)) core-hours")
                print("topology world \(r.worldSize) = dp \(r.dp) × tp \(r.tp), ZeRO-\(r.zero), hosts \(r.hosts.joined(separator: ", "))")
                print("parameters \(r.parameters), model FLOPs/token \(String(format: "%.4g", r.flopsPerToken))")
                for d in lineage { print("data \(d.summary)") }
                for (m, p) in last.sorted(by: { $0.key < $1.key }) { print("  \(m) = \(String(format: "%.6g", p.value)) at step \(p.step) (\(p.tokens) tokens)") }
                for e in events { print("  event step \(e.step): \(e.kind) \(e.message)") }
            }
        }
    }

    struct Diff: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The config keys in which two runs differ (nothing else).")
        @OptionGroup var options: StoreOptions
        @Argument(help: "First run (id, name or output directory).") var a: String
        @Argument(help: "Second run.") var b: String
        @Flag(help: "Print JSON.") var json = false
        func run() throws {
            try runReportingErrors {
                let store = try options.open()
                let ra = try store.find(a), rb = try store.find(b)
                let changes = try ConfigDiff.diff(ra.config, rb.config)
                if json { printJSON(changes); return }
                if changes.isEmpty { print("configs of runs \(ra.id) and \(rb.id) are identical") }
                for c in changes { print("\(c.key): \(c.a ?? "(absent)") → \(c.b ?? "(absent)")") }
            }
        }
    }

    struct Tag: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add tags to a run.")
        @OptionGroup var options: StoreOptions
        @Argument(help: "Run id, name or output directory.") var key: String
        @Argument(help: "Tags to add.") var tags: [String]
        func run() throws {
            try runReportingErrors {
                let store = try options.open()
                try store.addTags(run: try store.find(key).id, tags)
            }
        }
    }
}

struct CompareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Compare runs on one metric at matched tokens, steps or FLOPs; write an SVG plot.",
        discussion: """
        The table interpolates every run at the same x values over the range all runs cover. The
        plot smooths each curve (exponential moving average, debiased) before downsampling and
        draws the raw curve faintly behind it.

        Examples:
          smol compare 3 4 --metric val_loss --x tokens --svg val.svg
          smol compare baseline ablation --metric smol_facts_en/acc_norm --x flops
        """)

    @OptionGroup var options: StoreOptions
    @Argument(help: "Runs (id, name or output directory).") var runs: [String]
    @Option(help: "Metric: loss, val_loss, grad_norm, lr, ... or task/metric.") var metric = "loss"
    @Option(help: "x axis: tokens, steps or flops.") var x = "tokens"
    @Option(help: "Rows of the table.") var rows = 10
    @Option(help: "Write the plot here (SVG).") var svg: String?
    @Option(help: "Smoothing weight in [0, 1).") var smoothing: Double = 0.6
    @Option(help: "Points per curve in the plot at most.") var maxPoints = 400
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        try runReportingErrors {
            guard let axis = XAxis(rawValue: x) else { throw CLIError(message: "--x must be tokens, steps or flops, got '\(x)'") }
            guard !runs.isEmpty else { throw CLIError(message: "give at least one run") }
            guard smoothing >= 0, smoothing < 1 else { throw CLIError(message: "--smoothing must be in [0, 1)") }
            guard rows >= 1, maxPoints >= 2 else { throw CLIError(message: "--rows must be ≥ 1 and --max-points ≥ 2") }
            let store = try options.open()
            let records = try runs.map { try store.find($0) }
            let cmp = try RunComparison(store: store, runs: records, metric: metric, axis: axis)
            let table = cmp.table(rows: rows)
            if let path = svg {
                try Data(cmp.svg(smoothing: smoothing, maxPoints: maxPoints).utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
            }
            if json {
                struct Row: Encodable { var x: Double; var values: [Double?] }
                struct Out: Encodable { var metric: String; var axis: String; var runs: [String]; var rows: [Row] }
                printJSON(Out(metric: metric, axis: axis.rawValue, runs: cmp.lines.map(\.name), rows: table.map { Row(x: $0.x, values: $0.values) }))
                return
            }
            print(padLeft(axis.rawValue, 14) + cmp.lines.map { padLeft($0.name, 18) }.joined())
            for r in table {
                print(padLeft(String(format: "%.6g", r.x), 14) + r.values.map { padLeft($0.map { String(format: "%.5f", $0) } ?? "–", 18) }.joined())
            }
            if let path = svg { print("wrote \(path)") }
        }
    }
}
