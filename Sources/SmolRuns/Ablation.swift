import Foundation
import SmolModel
import SmolTrainer
import Yams

/// A sweep file for `smol ablate`: a base config, variants as config overrides, seeds.
///
///     name: code_share
///     base: ../demo.yaml
///     seeds: [1, 2, 3]
///     baseline: code25            # the variant the others are judged against (default: the first)
///     metrics: [val_loss, val_loss/code]
///     set: {training.steps: 100}  # applied to every variant
///     variants:
///       - {name: code25}
///       - {name: code10, set: {data.stages: [{start_tokens: 0, weights: {prose: 0.9, code: 0.1}}]}}
public struct AblationSweep: Sendable {
    public struct Variant: Sendable {
        public var name: String
        /// `key.path=value` overrides, as `smol train --set` takes them.
        public var overrides: [String]
    }
    public var name: String
    public var baseConfig: String
    public var seeds: [UInt64]
    public var baseline: String
    public var metrics: [String]
    public var variants: [Variant]
    public var path: String

    public static func load(_ path: String) throws -> AblationSweep {
        func bad(_ why: String) -> RunStoreError { RunStoreError("\(path): \(why)") }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw bad("cannot read the sweep file") }
        let loaded: Any?
        try YAMLLimits.check(text, path: path)
        do { loaded = try Yams.load(yaml: text) } catch { throw bad("YAML syntax error: \(error)") }
        guard let root = loaded as? [String: Any] else { throw bad("top level must be a mapping") }
        let known: Set<String> = ["name", "base", "seeds", "baseline", "metrics", "set", "variants"]
        for k in root.keys.sorted() where !known.contains(k) { throw bad("unknown key '\(k)' (known: \(known.sorted().joined(separator: ", ")))") }
        guard let base = root["base"] as? String else { throw bad("missing key 'base' (the base training config)") }
        let dir = (path as NSString).deletingLastPathComponent
        let basePath = base.hasPrefix("/") || dir.isEmpty ? base : (dir as NSString).appendingPathComponent(base)
        let seeds = (root["seeds"] as? [Int] ?? [1]).map { UInt64($0) }
        guard !seeds.isEmpty, Set(seeds).count == seeds.count else { throw bad("seeds: give distinct seeds") }
        func overrides(_ any: Any?, _ where_: String) throws -> [String] {
            guard let any else { return [] }
            guard let map = any as? [String: Any] else { throw bad("\(where_): 'set' must map config keys to values") }
            return try map.keys.sorted().map { k in "\(k)=" + (try Yams.dump(object: map[k]!)).trimmingCharacters(in: .whitespacesAndNewlines) }
        }
        let common = try overrides(root["set"], "set")
        guard let list = root["variants"] as? [[String: Any]], !list.isEmpty else { throw bad("variants: give at least one variant") }
        var variants: [Variant] = []
        for (i, v) in list.enumerated() {
            guard let name = v["name"] as? String, !name.isEmpty else { throw bad("variants[\(i)]: missing 'name'") }
            for k in v.keys where k != "name" && k != "set" { throw bad("variants[\(i)]: unknown key '\(k)'") }
            guard name.allSatisfy({ $0.isLetter || $0.isNumber || "_-.".contains($0) }) else { throw bad("variants[\(i)]: name '\(name)' must be letters, digits, _ - .") }
            variants.append(Variant(name: name, overrides: common + (try overrides(v["set"], "variants[\(i)]"))))
        }
        guard Set(variants.map(\.name)).count == variants.count else { throw bad("variant names must be distinct") }
        let baseline = root["baseline"] as? String ?? variants[0].name
        guard variants.contains(where: { $0.name == baseline }) else { throw bad("baseline '\(baseline)' is not a variant") }
        let name = root["name"] as? String ?? ((path as NSString).lastPathComponent as NSString).deletingPathExtension
        let metrics = root["metrics"] as? [String] ?? ["val_loss"]
        let sweep = AblationSweep(name: name, baseConfig: basePath, seeds: seeds, baseline: baseline, metrics: metrics, variants: variants, path: path)
        // Every variant's config must load before anything runs.
        for v in variants { _ = try TrainConfig.load(path: basePath, overrides: v.overrides) }
        return sweep
    }

    /// One training of the sweep.
    public struct Job: Sendable {
        public var variant: String
        public var seed: UInt64
        public var outputDir: String
        public var overrides: [String]
    }

    public func jobs(outputRoot: String) -> [Job] {
        variants.flatMap { v in
            seeds.map { s in
                Job(variant: v.name, seed: s, outputDir: (outputRoot as NSString).appendingPathComponent("\(v.name)-seed\(s)"),
                    overrides: v.overrides + ["training.seed=\(s)"])
            }
        }
    }
}

/// The statistics of a finished sweep: per variant and metric the final value over seeds (mean,
/// 95% confidence interval with Student's t), the difference from the baseline and a verdict
/// judged against the seed noise, and the compute ledger.
public struct AblationReport: Codable, Sendable {
    public struct Cell: Codable, Sendable {
        public var values: [Double]
        public var mean: Double
        public var std: Double
        public var ci95: Double
        /// mean − baseline mean, and its standard error sqrt(s_v²/n_v + s_b²/n_b)
        public var difference: Double?
        public var differenceStderr: Double?
        /// helps / neutral / hurts: |difference| > 2 standard errors of the difference, in the metric's good direction.
        public var verdict: String?
        enum CodingKeys: String, CodingKey { case values, mean, std, ci95, difference, verdict, differenceStderr = "difference_stderr" }
    }
    public var sweep: String
    public var baseline: String
    public var seeds: [UInt64]
    public var metrics: [String]
    public var variants: [String]
    /// variant → metric → cell
    public var cells: [String: [String: Cell]]
    public var ablationCoreHours: Double
    public var mainCoreHours: Double
    public var runs: Int
    enum CodingKeys: String, CodingKey {
        case sweep, baseline, seeds, metrics, variants, cells, runs
        case ablationCoreHours = "ablation_core_hours", mainCoreHours = "main_core_hours"
    }

    /// Two-sided 95% Student t quantiles for 1…30 degrees of freedom.
    static let t95: [Double] = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
                                2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]

    public init(sweep: AblationSweep, jobs: [AblationSweep.Job], store: RunStore) throws {
        self.sweep = sweep.name; baseline = sweep.baseline; seeds = sweep.seeds; metrics = sweep.metrics
        variants = sweep.variants.map(\.name)
        var values: [String: [String: [Double]]] = [:]
        var hours = 0.0
        for job in jobs {
            let run = try store.find(job.outputDir)
            hours += run.coreHours
            for m in sweep.metrics {
                guard let last = try store.series(run: run.id, metric: m).last else {
                    throw RunStoreError("run \(run.id) (\(job.outputDir)) has no '\(m)' (it has: \(try store.metricNames(run: run.id).joined(separator: ", ")))")
                }
                values[job.variant, default: [:]][m, default: []].append(last.value)
            }
        }
        ablationCoreHours = hours
        mainCoreHours = try store.runs(tag: "main").reduce(0) { $0 + $1.coreHours }
        runs = jobs.count
        // Each variant's spread over seeds first; the differences from the baseline come from those.
        func summary(_ x: [Double]) -> Cell {
            let n = Double(x.count), mean = x.reduce(0, +) / n
            let std = x.count > 1 ? (x.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / (n - 1)).squareRoot() : 0
            let t = x.count > 1 ? AblationReport.t95[min(x.count - 2, AblationReport.t95.count - 1)] : 0
            return Cell(values: x, mean: mean, std: std, ci95: t * std / n.squareRoot())
        }
        cells = [:]
        for v in variants {
            for m in sweep.metrics {
                var cell = summary(values[v]![m]!)
                if v != sweep.baseline {
                    let b = summary(values[sweep.baseline]![m]!)
                    let d = cell.mean - b.mean
                    let se = (cell.std * cell.std / Double(cell.values.count) + b.std * b.std / Double(b.values.count)).squareRoot()
                    cell.difference = d; cell.differenceStderr = se
                    let good = metricLowerIsBetter(m) ? d < 0 : d > 0
                    // With one seed each there is no noise estimate (se = 0): no verdict but neutral.
                    cell.verdict = abs(d) > 2 * se && se > 0 ? (good ? "helps" : "hurts") : "neutral"
                }
                cells[v, default: [:]][m] = cell
            }
        }
    }

    public func markdown(plots: [String: String]) -> String {
        func f(_ x: Double) -> String { String(format: "%.4f", x) }
        var s = "# Ablation: \(sweep)\n\nBaseline: **\(baseline)**; seeds: \(seeds.map(String.init).joined(separator: ", ")); "
        s += "\(runs) runs. Values are each run's last evaluation; ± is the 95% confidence interval over seeds (Student's t). "
        s += "A variant helps or hurts when its difference from the baseline exceeds twice the standard error of the difference "
        s += "(the seed noise of both); otherwise it is neutral.\n\n"
        for m in metrics {
            s += "## \(m) (\(metricLowerIsBetter(m) ? "lower" : "higher") is better)\n\n"
            s += "| variant | mean ± CI | per seed | vs baseline | verdict |\n|---|---|---|---|---|\n"
            for v in variants {
                let c = cells[v]![m]!
                let diff = c.difference.map { String(format: "%+.4f ± %.4f", $0, 2 * (c.differenceStderr ?? 0)) } ?? "–"
                s += "| \(v)\(v == baseline ? " (baseline)" : "") | \(f(c.mean)) ± \(f(c.ci95)) | \(c.values.map(f).joined(separator: ", ")) | \(diff) | \(c.verdict ?? "–") |\n"
            }
            if let p = plots[m] { s += "\n![\(m)](\(p))\n" }
            s += "\n"
        }
        s += "## Compute ledger\n\n| | core-hours |\n|---|---|\n"
        s += "| this sweep (\(runs) runs) | \(String(format: "%.4f", ablationCoreHours)) |\n"
        s += "| main runs in the store (tag main) | \(String(format: "%.4f", mainCoreHours)) |\n"
        if mainCoreHours > 0 { s += "| sweep / main | \(String(format: "%.1f%%", 100 * ablationCoreHours / mainCoreHours)) |\n" }
        s += "\nThe playbook's budget: ablations and debugging took 161,280 GPU-hours against 276,480 for the main run (58%).\n"
        return s
    }
}
