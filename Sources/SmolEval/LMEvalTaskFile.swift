import Foundation
import Yams
import SmolTrainer

/// lm-evaluation-harness task YAMLs read as they are: `task`, `output_type`, `dataset_path: json`
/// with `dataset_kwargs.data_files`, the splits, `doc_to_text` / `doc_to_choice` / `doc_to_target`,
/// `description`, the delimiters, `num_fewshot`, `metric_list`, `generation_kwargs`, `metadata`
/// and `include`. What smol cannot do as lm-eval does (Python `!function`s, Hub datasets, filters,
/// metrics it doesn't compute) is refused naming the key, never approximated silently.
enum LMEvalTaskFile {
    /// An lm-eval file names its task with `task`; a smol one with `name` and `kind`.
    static func isLMEval(_ root: [String: Any]) -> Bool { root["task"] != nil && root["kind"] == nil }

    static let accepted: Set<String> = [
        "task", "tag", "group", "output_type", "dataset_path", "dataset_name", "dataset_kwargs",
        "test_split", "validation_split", "training_split", "fewshot_split", "doc_to_text", "doc_to_choice",
        "doc_to_target", "description", "target_delimiter", "fewshot_delimiter", "num_fewshot", "fewshot_config",
        "metric_list", "generation_kwargs", "metadata", "include", "should_decontaminate",
        "doc_to_decontamination_query", "repeats", "task_alias",
    ]

    /// lm-eval metric → smol metric. acc_norm is length-normalised by characters in both.
    static let metricNames: [String: String] = [
        "acc": "acc", "acc_norm": "acc_norm", "exact_match": "em",
        "word_perplexity": "word_perplexity", "byte_perplexity": "byte_perplexity", "bits_per_byte": "bits_per_byte",
    ]

    /// An included file, read, checked and parsed, with its own includes merged.
    static func load(_ path: String, depth: Int) throws -> [String: Any] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw EvalError("\(path): cannot read task file") }
        do { try YAMLLimits.check(text, path: path) } catch { throw EvalError("\(error)") }
        let loaded: Any?
        do { loaded = try Yams.load(yaml: text) } catch { throw EvalError("\(path): YAML syntax error: \(error)") }
        guard let root = loaded as? [String: Any] else { throw EvalError("\(path): top level must be a mapping") }
        return try merged(root, text: text, path: path, depth: depth)
    }

    /// `root` (parsed from `text`, the file at `path`) with its `include`s merged under it (the
    /// including file wins), as lm-eval does.
    static func merged(_ root: [String: Any], text: String, path: String, depth: Int = 0) throws -> [String: Any] {
        guard depth < 8 else { throw EvalError("\(path): include: nested more than 8 deep") }
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where line.contains("!function") {
            let key = line.split(separator: ":").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
            throw EvalError("\(path):\(i + 1): \(key): !function is Python code, which smol cannot run; give a field name or a Jinja template")
        }
        var root = root
        if let include = root.removeValue(forKey: "include") {
            guard let name = include as? String else { throw EvalError("\(path): include: must be a file name") }
            let dir = (path as NSString).deletingLastPathComponent
            let base = try load(name.hasPrefix("/") || dir.isEmpty ? name : (dir as NSString).appendingPathComponent(name), depth: depth + 1)
            root = base.merging(root) { _, mine in mine }
        }
        return root
    }

    static func spec(_ root: [String: Any], path: String) throws -> TaskSpec {
        func bad(_ key: String, _ why: String) -> EvalError { EvalError("\(path): \(key): \(why)") }
        for k in root.keys.sorted() where !accepted.contains(k) {
            let why = ["process_docs", "process_results", "filter_list"].contains(k)
                ? "not supported (smol runs no Python hooks or answer filters)" : "unknown lm-eval task key"
            throw bad(k, why)
        }
        guard let name = root["task"] as? String, !name.isEmpty else { throw bad("task", "must be one task name (groups are not read)") }
        let outputType = root["output_type"] as? String ?? "generate_until"
        let kind: TaskKind
        switch outputType {
        case "multiple_choice": kind = .multipleChoice
        case "generate_until": kind = .generative
        case "loglikelihood_rolling": kind = .perplexity
        default: throw bad("output_type", "'\(outputType)' is not supported (multiple_choice, generate_until, loglikelihood_rolling)")
        }
        var spec = TaskSpec(name: name, kind: kind, data: "")
        spec.format = .lmEval

        // Data: local JSON lines through the `json` builder, one file per split.
        let datasetPath = root["dataset_path"] as? String ?? ""
        guard datasetPath == "json" else {
            throw bad("dataset_path", "'\(datasetPath)' would be fetched from the Hugging Face Hub; smol reads local files: "
                      + "use dataset_path: json with dataset_kwargs: {data_files: {test: FILE.jsonl}}")
        }
        if root["dataset_name"] != nil && !(root["dataset_name"] is NSNull) { throw bad("dataset_name", "not used with dataset_path: json") }
        let kwargs = root["dataset_kwargs"] as? [String: Any] ?? [:]
        for k in kwargs.keys where k != "data_files" { throw bad("dataset_kwargs.\(k)", "not supported (only data_files)") }
        var splits: [String: String] = [:]
        func oneFile(_ v: Any, _ key: String) throws -> String {
            if let s = v as? String { return s }
            if let l = v as? [String], l.count == 1 { return l[0] }
            throw bad(key, "give one file per split")
        }
        switch kwargs["data_files"] {
        case let map as [String: Any]: for (split, v) in map { splits[split] = try oneFile(v, "dataset_kwargs.data_files.\(split)") }
        case let v?: splits["train"] = try oneFile(v, "dataset_kwargs.data_files")   // datasets names a lone file's split "train"
        case nil: throw bad("dataset_kwargs.data_files", "missing: name the JSONL file of each split")
        }
        func split(_ key: String) throws -> String? {
            guard let s = root[key] as? String else { return nil }
            guard splits[s] != nil else { throw bad(key, "split '\(s)' has no file in dataset_kwargs.data_files (it has: \(splits.keys.sorted().joined(separator: ", ")))") }
            return s
        }
        guard let evalSplit = try split("test_split") ?? split("validation_split") else {
            throw bad("test_split", "name the split to evaluate (test_split or validation_split)")
        }
        let fewshotSplit = try split("fewshot_split") ?? split("training_split") ?? split("validation_split") ?? evalSplit
        let dir = (path as NSString).deletingLastPathComponent
        // Hugging Face datasets resolves data files against the working directory; a task file that
        // sits beside its data is also found.
        func resolve(_ file: String) throws -> String {
            if file.hasPrefix("/") { return file }
            let beside = dir.isEmpty ? file : (dir as NSString).appendingPathComponent(file)
            for candidate in [beside, file] where FileManager.default.fileExists(atPath: candidate) {
                return URL(fileURLWithPath: candidate).standardizedFileURL.path
            }
            throw EvalError("\(path): dataset_kwargs.data_files: '\(file)' found neither beside the task file (\(beside)) nor in the working directory")
        }
        spec.data = try resolve(splits[evalSplit]!)
        if fewshotSplit != evalSplit { spec.fewshotData = try resolve(splits[fewshotSplit]!) }

        func template(_ key: String) throws -> String? {
            switch root[key] {
            case nil, is NSNull: return nil
            case let s as String: return s
            case let i as Int: return String(i)
            default: throw bad(key, "must be a field name or a Jinja template")
            }
        }
        spec.docToText = try template("doc_to_text")
        spec.docToTarget = try template("doc_to_target")
        switch root["doc_to_choice"] {
        case nil, is NSNull: break
        case let s as String: spec.docToChoice = .one(s)
        case let l as [String]: spec.docToChoice = .list(l)
        default: throw bad("doc_to_choice", "must be a field name, a template, or a list of templates")
        }
        spec.description = try template("description")
        // Yams reads a quoted "" as null: a delimiter given but empty is the empty string.
        spec.targetDelimiter = root.keys.contains("target_delimiter") ? (root["target_delimiter"] as? String ?? "") : " "
        if root.keys.contains("fewshot_delimiter") { spec.fewshotDelimiter = root["fewshot_delimiter"] as? String ?? "" }
        if let n = root["num_fewshot"] {
            guard let n = n as? Int else { throw bad("num_fewshot", "must be an integer") }
            spec.numFewshot = n
        }
        if let fc = root["fewshot_config"] as? [String: Any], let sampler = fc["sampler"] as? String, sampler != "default" {
            throw bad("fewshot_config.sampler", "'\(sampler)' is not supported (the default random draw only)")
        }
        if let r = root["repeats"] as? Int, r != 1 { throw bad("repeats", "only 1 is supported") }
        if let meta = root["metadata"] as? [String: Any], let v = meta["version"] {
            if let i = v as? Int { spec.version = i } else if let d = v as? Double, d.isFinite, abs(d) < 1e9 { spec.version = Int(d) }
        }

        if let list = root["metric_list"] {
            guard let entries = list as? [[String: Any]] else { throw bad("metric_list", "must be a list of {metric: NAME, ...}") }
            var metrics: [String] = []
            for (i, e) in entries.enumerated() {
                guard let m = e["metric"] as? String else { throw bad("metric_list[\(i)]", "missing 'metric' (a name; Python functions are not run)") }
                guard let ours = metricNames[m] else {
                    throw bad("metric_list[\(i)]", "metric '\(m)' is not computed by smol (it computes: \(metricNames.keys.sorted().joined(separator: ", ")))")
                }
                if let agg = e["aggregation"] as? String, !(agg == "mean" || (kind == .perplexity && ["weighted_perplexity", "bits_per_byte"].contains(agg))) {
                    throw bad("metric_list[\(i)].aggregation", "'\(agg)' is not supported")
                }
                for option in ["ignore_case", "ignore_punctuation", "regexes_to_ignore", "ignore_numbers"] where e[option] != nil {
                    if let on = e[option] as? Bool, !on { continue }
                    throw bad("metric_list[\(i)].\(option)", "exact_match options are not supported; smol's qem normalises answers its own way")
                }
                metrics.append(ours)
            }
            spec.metrics = metrics
        } else {
            spec.metrics = kind == .multipleChoice ? ["acc"] : (kind == .generative ? ["em"] : ["word_perplexity", "byte_perplexity", "bits_per_byte"])
        }

        spec.maxTokens = 256   // lm-eval's max_gen_toks default
        spec.stop = []
        if let g = root["generation_kwargs"] {
            guard let g = g as? [String: Any] else { throw bad("generation_kwargs", "must be a mapping") }
            for k in g.keys.sorted() where !["until", "max_gen_toks", "do_sample", "temperature"].contains(k) {
                throw bad("generation_kwargs.\(k)", "not supported (until, max_gen_toks, do_sample: false, temperature: 0)")
            }
            switch g["until"] {
            case nil: break
            case let s as String: spec.stop = [s]
            case let l as [String]: spec.stop = l
            default: throw bad("generation_kwargs.until", "must be a string or a list of strings")
            }
            if let m = g["max_gen_toks"] { guard let m = m as? Int else { throw bad("generation_kwargs.max_gen_toks", "must be an integer") }; spec.maxTokens = m }
            if let s = g["do_sample"] as? Bool, s { throw bad("generation_kwargs.do_sample", "sampling is not supported; smol scores greedy answers") }
            if let t = g["temperature"] as? Double, t != 0 { throw bad("generation_kwargs.temperature", "only 0 (greedy) is supported") }
        } else if kind == .generative {
            // lm-eval stops at the few-shot delimiter when `until` is not given.
            spec.stop = [spec.fewshotDelimiter]
        }
        return spec
    }
}
