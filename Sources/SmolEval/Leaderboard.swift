import Foundation
import SmolTrainer

/// Models × tasks with 95% confidence intervals, and per task whether each model's difference
/// from the task's best model is significant (paired permutation test on the shared items).
public struct Leaderboard: Codable, Sendable {
    public struct Cell: Codable, Sendable {
        public var value: Double
        public var stderr: Double
        /// value ± 1.96 · stderr
        public var ci95: [Double]
        /// Against the task's best model: nil for the best itself.
        public var versusBest: Statistics.PairedComparison?
        /// What in the model's recorded lineage touches this task (results.json's lineage flags):
        /// overlapping data, a flagged audit, a teacher or initial model whose lineage touches it.
        public var lineage: [String] = []
        enum CodingKeys: String, CodingKey { case value, stderr, ci95 = "ci95", versusBest = "versus_best", lineage }
    }
    public struct Column: Codable, Sendable {
        public var task: String
        public var metric: String
        public var higherIsBetter: Bool
        public var best: String
        enum CodingKeys: String, CodingKey { case task, metric, best, higherIsBetter = "higher_is_better" }
    }

    public var models: [String]
    public var columns: [Column]
    /// model → task → cell
    public var cells: [String: [String: Cell]]
    public var alpha: Double

    /// The metric a task is ranked by when none is asked for.
    public static func primaryMetric(_ kind: TaskKind, available: [String]) -> String {
        let preferred: [String]
        switch kind {
        case .multipleChoice: preferred = ["acc_norm", "acc"]
        case .generative: preferred = ["qem", "em", "f1"]
        case .perplexity: preferred = ["bits_per_byte"]
        case .needle: preferred = ["acc"]
        }
        return preferred.first(where: available.contains) ?? available.sorted().first ?? ""
    }

    public init(files: [String], metric: String? = nil, alpha: Double = 0.05) throws {
        self.alpha = alpha
        var loaded: [(name: String, results: EvalResults, file: String)] = []
        var seen: [String: Int] = [:]
        for f in files {
            let (r, path) = try EvalResults.load(f)
            // Two runs of the same model name stay apart: name, name#2, ...
            seen[r.model.name, default: 0] += 1
            let name = seen[r.model.name]! == 1 ? r.model.name : "\(r.model.name)#\(seen[r.model.name]!)"
            loaded.append((name, r, path))
        }
        guard !loaded.isEmpty else { throw EvalError("no results files given") }
        models = loaded.map(\.name)
        var taskNames: [String] = []
        for l in loaded { for t in l.results.tasks.keys.sorted() where !taskNames.contains(t) { taskNames.append(t) } }
        columns = []
        cells = [:]
        for task in taskNames {
            let holders = loaded.filter { $0.results.tasks[task] != nil }
            let kind = holders[0].results.tasks[task]!.kind
            let m = metric ?? Leaderboard.primaryMetric(kind, available: Array(holders[0].results.tasks[task]!.metrics.keys))
            let withMetric = holders.filter { $0.results.tasks[task]!.metrics[m] != nil }
            guard !withMetric.isEmpty else { continue }
            let higher = !metricLowerIsBetter(m)
            let best = withMetric.max { a, b in
                let va = a.results.tasks[task]!.metrics[m]!.value, vb = b.results.tasks[task]!.metrics[m]!.value
                return higher ? va < vb : va > vb
            }!
            columns.append(Column(task: task, metric: m, higherIsBetter: higher, best: best.name))
            let bestDetails = try? EvalResults.loadDetails(resultsFile: best.file, task: task)
            for l in withMetric {
                let v = l.results.tasks[task]!.metrics[m]!
                var cell = Cell(value: v.value, stderr: v.stderr, ci95: [v.value - 1.96 * v.stderr, v.value + 1.96 * v.stderr])
                cell.lineage = l.results.lineage?.flags[task] ?? []
                if l.name != best.name, let bd = bestDetails,
                   l.results.tasks[task]!.itemsHash == best.results.tasks[task]!.itemsHash,
                   let mine = try? EvalResults.loadDetails(resultsFile: l.file, task: task) {
                    let shared = mine.keys.filter { bd[$0] != nil }.sorted()
                    let a = shared.map { Leaderboard.itemScore(mine[$0]!, metric: m) }
                    let b = shared.map { Leaderboard.itemScore(bd[$0]!, metric: m) }
                    if !a.contains(where: { $0 == nil }) && !b.contains(where: { $0 == nil }) {
                        var c = Statistics.pairedPermutationTest(a.map { $0! }, b.map { $0! }, alpha: alpha)
                        if !higher && c.verdict != .notSignificant { c.verdict = c.verdict == .better ? .worse : .better }
                        cell.versusBest = c
                    }
                }
                cells[l.name, default: [:]][task] = cell
            }
        }
    }

    /// A per-item score for the paired test: the item's metric, or for perplexity tasks the item's
    /// bits per byte.
    static func itemScore(_ d: ItemDetail, metric: String) -> Double? {
        if let v = d.metrics[metric] { return v }
        if metricLowerIsBetter(metric), let ll = d.logLikelihoods?.first, let bytes = d.bytes, bytes > 0 {
            return -ll / (Double(bytes) * log(2))
        }
        return nil
    }

    public func markdown() -> String {
        func f(_ x: Double) -> String { String(format: "%.4f", x) }
        var s = "| model | " + columns.map { "\($0.task) (\($0.metric)\($0.higherIsBetter ? " ↑" : " ↓"))" }.joined(separator: " | ") + " |\n"
        s += "|---|" + columns.map { _ in "---|" }.joined() + "\n"
        for model in models {
            s += "| \(model) |"
            for col in columns {
                guard let c = cells[model]?[col.task] else { s += " – |"; continue }
                var mark = ""
                if col.best == model { mark = " **best**" }
                else if let v = c.versusBest { mark = v.verdict == .notSignificant ? " ≈ (p=\(String(format: "%.3f", v.pValue)))" : " ▼ (p=\(String(format: "%.3f", v.pValue)))" }
                else { mark = " (no paired test)" }
                s += " \(f(c.value)) ± \(f(1.96 * c.stderr))\(c.lineage.isEmpty ? "" : " ⚑")\(mark) |"
            }
            s += "\n"
        }
        var notes: [String] = []
        for model in models { for col in columns { for l in cells[model]?[col.task]?.lineage ?? [] { notes.append("⚑ \(model) on \(col.task): \(l)") } } }
        if !notes.isEmpty { s += "\n" + notes.joined(separator: "\n") + "\n" }
        s += "\n± is the 95% confidence interval (1.96 × standard error). Against each task's best model: ≈ not significantly different, ▼ significantly worse (paired permutation test on the same items, α = \(alpha)); \"no paired test\" when the items differ or details are missing. ⚑: the model's recorded lineage touches the task (listed above).\n"
        return s
    }
}
