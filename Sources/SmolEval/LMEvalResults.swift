import Foundation
import SmolTrainer
import SmolTensor

/// results.json in lm-evaluation-harness's layout (`--output-format lm-eval`), for tools that read
/// its files: per task "METRIC,none" and "METRIC_stderr,none" (the filter is always "none"),
/// "n-shot", "n-samples", "versions", "higher_is_better" and each task's config in its keys.
public struct LMEvalResults {
    public let smol: EvalResults

    public init(_ smol: EvalResults) { self.smol = smol }

    /// smol metric → lm-eval's name for it (the others keep their names).
    static let metricNames = ["em": "exact_match"]
    static let outputTypes: [TaskKind: String] = [.multipleChoice: "multiple_choice", .generative: "generate_until", .perplexity: "loglikelihood_rolling", .needle: "generate_until"]

    public func json() -> [String: Any] {
        func number(_ x: Double) -> Any { x.isFinite ? x : "N/A" }
        var results: [String: Any] = [:], configs: [String: Any] = [:], versions: [String: Any] = [:]
        var nShot: [String: Any] = [:], nSamples: [String: Any] = [:], higher: [String: Any] = [:], subtasks: [String: Any] = [:]
        for (name, t) in smol.tasks {
            var r: [String: Any] = ["alias": name]
            var better: [String: Bool] = [:]
            var metricList: [[String: Any]] = []
            for m in t.spec.resolvedMetrics {
                guard let v = t.metrics[m] else { continue }
                let key = LMEvalResults.metricNames[m] ?? m
                r["\(key),none"] = number(v.value)
                r["\(key)_stderr,none"] = number(v.stderr)
                better[key] = !metricLowerIsBetter(m)
                metricList.append(["metric": key, "aggregation": "mean", "higher_is_better": !metricLowerIsBetter(m)])
            }
            results[name] = r
            higher[name] = better
            versions[name] = t.version
            nShot[name] = t.spec.numFewshot
            nSamples[name] = ["original": t.items, "effective": t.items]
            subtasks[name] = [String]()
            var config: [String: Any] = [
                "task": name, "output_type": LMEvalResults.outputTypes[t.kind]!, "num_fewshot": t.spec.numFewshot,
                "target_delimiter": t.spec.delimiter, "fewshot_delimiter": t.spec.fewshotDelimiter, "metric_list": metricList,
                "metadata": ["version": t.version], "dataset_path": "json",
                "dataset_kwargs": ["data_files": ["test": t.spec.data]], "test_split": "test",
            ]
            if let s = t.spec.docToText { config["doc_to_text"] = s }
            if let s = t.spec.docToTarget { config["doc_to_target"] = s }
            switch t.spec.docToChoice {
            case .one(let s)?: config["doc_to_choice"] = s
            case .list(let l)?: config["doc_to_choice"] = l
            case nil: break
            }
            if let d = t.spec.description { config["description"] = d }
            if t.kind == .generative { config["generation_kwargs"] = ["until": t.spec.stop, "max_gen_toks": t.spec.maxTokens, "do_sample": false] }
            configs[name] = config
        }
        return [
            "results": results, "group_subtasks": subtasks, "configs": configs, "versions": versions, "n-shot": nShot,
            "higher_is_better": higher, "n-samples": nSamples,
            "config": ["model": "smol", "model_args": "pretrained=\(smol.model.source),dtype=\(smol.config.precision == .bf16 ? "bfloat16" : "float32")", "batch_size": smol.config.batchSize,
                       "limit": smol.config.limit.map { $0 as Any } ?? NSNull(), "random_seed": Int(truncatingIfNeeded: smol.config.seed)] as [String: Any],
            "model_name": smol.model.source, "model_source": "smol", "smol_version": EvalResults.toolVersion,
            "date": Date().timeIntervalSince1970,
        ]
    }

    public func data() throws -> Data {
        try JSONSerialization.data(withJSONObject: json(), options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    }
}
