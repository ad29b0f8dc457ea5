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
///       - {name: other, seeds: [4, 5, 6]}   # its own seeds: compared unpaired (Welch)
public struct AblationSweep: Sendable {
    public struct Variant: Sendable {
        public var name: String
        /// `key.path=value` overrides, as `smol train --set` takes them.
        public var overrides: [String]
        /// The sweep's seeds unless the variant names its own.
        public var seeds: [UInt64]
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
        if let given = root["seeds"], !((given as? [Int]).map { $0.allSatisfy { $0 >= 0 } } ?? false) {
            throw bad("seeds: give a list of non-negative integer seeds")
        }
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
            for k in v.keys where !["name", "set", "seeds"].contains(k) { throw bad("variants[\(i)]: unknown key '\(k)' (known: name, seeds, set)") }
            var variantSeeds = seeds
            if let own = v["seeds"] {
                guard let list = own as? [Int], !list.isEmpty, list.allSatisfy({ $0 >= 0 }), Set(list).count == list.count else {
                    throw bad("variants[\(i)].seeds: give distinct non-negative integer seeds")
                }
                variantSeeds = list.map { UInt64($0) }
            }
            guard name.allSatisfy({ $0.isLetter || $0.isNumber || "_-.".contains($0) }) else { throw bad("variants[\(i)]: name '\(name)' must be letters, digits, _ - .") }
            variants.append(Variant(name: name, overrides: common + (try overrides(v["set"], "variants[\(i)]")), seeds: variantSeeds))
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
            v.seeds.map { s in
                Job(variant: v.name, seed: s, outputDir: (outputRoot as NSString).appendingPathComponent("\(v.name)-seed\(s)"),
                    overrides: v.overrides + ["training.seed=\(s)"])
            }
        }
    }
}

/// The statistics of a finished sweep: per variant and metric the final value over seeds (mean,
/// 95% confidence interval with Student's t), the difference from the baseline tested against the
/// seed noise (paired over shared seeds, Welch otherwise; see SeedComparison), a verdict, and the
/// compute ledger.
public struct AblationReport: Codable, Sendable {
    public struct Cell: Codable, Sendable {
        public var seeds: [UInt64]
        public var values: [Double]
        public var mean: Double
        public var std: Double
        public var ci95: Double
        /// mean − baseline mean and its standard error (as in `comparison`)
        public var difference: Double?
        public var differenceStderr: Double?
        public var comparison: SeedComparison?
        /// helps / hurts when the test's two-sided p < 0.05, in the metric's good direction; neutral
        /// otherwise, and when there is no noise estimate (one seed).
        public var verdict: String?
        enum CodingKeys: String, CodingKey { case seeds, values, mean, std, ci95, difference, comparison, verdict, differenceStderr = "difference_stderr" }
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

    public init(sweep: AblationSweep, jobs: [AblationSweep.Job], store: RunStore) throws {
        self.sweep = sweep.name; baseline = sweep.baseline; seeds = sweep.seeds; metrics = sweep.metrics
        variants = sweep.variants.map(\.name)
        var values: [String: [String: [(seed: UInt64, value: Double)]]] = [:]
        var hours = 0.0
        for job in jobs {
            let run = try store.find(job.outputDir)
            hours += run.coreHours
            for m in sweep.metrics {
                guard let last = try store.series(run: run.id, metric: m).last else {
                    throw RunStoreError("run \(run.id) (\(job.outputDir)) has no '\(m)' (it has: \(try store.metricNames(run: run.id).joined(separator: ", ")))")
                }
                values[job.variant, default: [:]][m, default: []].append((job.seed, last.value))
            }
        }
        ablationCoreHours = hours
        mainCoreHours = try store.runs(tag: "main").reduce(0) { $0 + $1.coreHours }
        runs = jobs.count
        func summary(_ x: [(seed: UInt64, value: Double)]) -> Cell {
            let v = x.map(\.value), n = Double(v.count), mean = v.reduce(0, +) / n
            let std = v.count > 1 ? (v.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / (n - 1)).squareRoot() : 0
            let t = v.count > 1 ? StudentT.quantile(0.975, df: n - 1) : 0
            return Cell(seeds: x.map(\.seed), values: v, mean: mean, std: std, ci95: t * std / n.squareRoot())
        }
        cells = [:]
        for v in variants {
            for m in sweep.metrics {
                var cell = summary(values[v]![m]!)
                if v != sweep.baseline, let c = SeedComparison.compare(variant: values[v]![m]!, baseline: values[sweep.baseline]![m]!) {
                    cell.comparison = c
                    cell.difference = c.difference; cell.differenceStderr = c.standardError
                    let good = metricLowerIsBetter(m) ? c.difference < 0 : c.difference > 0
                    cell.verdict = c.pValue < SeedComparison.alpha ? (good ? "helps" : "hurts") : "neutral"
                } else if v != sweep.baseline {
                    cell.difference = cell.mean - summary(values[sweep.baseline]![m]!).mean
                    cell.verdict = "neutral"   // one seed: no noise estimate, no verdict but neutral
                }
                cells[v, default: [:]][m] = cell
            }
        }
    }

    public func markdown(plots: [String: String]) -> String {
        func f(_ x: Double) -> String { String(format: "%.4f", x) }
        var s = "# Ablation: \(sweep)\n\nBaseline: **\(baseline)**; seeds: \(seeds.map(String.init).joined(separator: ", ")); "
        s += "\(runs) runs. Values are each run's last evaluation; ± is the 95% confidence interval over seeds (Student's t). "
        s += "A variant is compared with the baseline by a paired t-test on the per-seed differences when both ran the same seeds "
        s += "(the same seed gives the same initialisation and data order, so the noise they share cancels), by Welch's t-test "
        s += "otherwise. It helps or hurts when the two-sided p < 0.05, and is neutral otherwise. \"Detectable\" is the smallest "
        s += "difference these seeds would detect with 80% power at the measured noise; \"seeds\" is how many seeds the "
        s += "observed difference would need for that.\n\n"
        for m in metrics {
            s += "## \(m) (\(metricLowerIsBetter(m) ? "lower" : "higher") is better)\n\n"
            s += "| variant | mean ± CI | per seed | vs baseline ± SE | test | p | detectable | seeds | verdict |\n"
            s += "|---|---|---|---|---|---|---|---|---|\n"
            for v in variants {
                let c = cells[v]![m]!
                var tail = "| – | – | – | – | – | \(c.verdict ?? "–") |"
                if let k = c.comparison {
                    let p = k.pValue < 1e-4 ? String(format: "%.1e", k.pValue) : String(format: "%.4f", k.pValue)
                    tail = String(format: "| %+.4f ± %.4f | %@ (%@ d.o.f.) | %@ | %.4f | %@ | %@ |", k.difference, k.standardError,
                                  k.test, String(format: k.degreesOfFreedom == k.degreesOfFreedom.rounded() ? "%.0f" : "%.1f", k.degreesOfFreedom),
                                  p, k.minDetectable, k.seedsToDetect.map(String.init) ?? (k.difference == 0 ? "–" : ">1000"), c.verdict ?? "–")
                } else if let d = c.difference {
                    tail = String(format: "| %+.4f | – | – | – | – | %@ |", d, c.verdict ?? "–")
                }
                s += "| \(v)\(v == baseline ? " (baseline)" : "") | \(f(c.mean)) ± \(f(c.ci95)) | \(c.values.map(f).joined(separator: ", ")) \(tail)\n"
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
