import ArgumentParser
import Foundation
import SmolWeights
import SmolEval
import SmolHub
import SmolTensor

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Evaluate a model on tasks: log-likelihood multiple choice, generation, perplexity.",
        discussion: """
        TASKS are task files (YAML) or directories of them; a bare name is looked up in tasks/.
        A `kind: needle` task (RULER's single needle) also writes DIR/TASK.heatmap.svg.
        A task file is smol's layout or an lm-evaluation-harness task YAML as it is (`task`,
        `output_type`, `dataset_path: json` with `dataset_kwargs.data_files`, `doc_to_*`,
        `metric_list`, ...). Writes DIR/results.json (per task and metric: value and stderr; config; versions; hashes
        of items and prompts) and DIR/details/TASK.jsonl (one record per item). Scores do not
        depend on --batch-size, in either --precision. --precision bf16 rounds the inputs of every
        projection and of the head to bfloat16 (float32 sums): long prompts score up to about twice
        as fast (short items gain little: packing the weights dominates), and each log-likelihood
        moves by bf16 rounding (docs/PRECISION.md); results.json records it.

        Examples:
          smol eval SmolLM2-135M-Instruct.Q4_1.gguf --tasks tasks/ --output eval/smollm2
          smol eval runs/demo --tasks smol_facts_en,smol_facts_ar --batch-size 8 --json
          smol eval SmolLM2-135M-Instruct.Q4_1.gguf --tasks smol_facts_en --precision bf16
        """)

    @Argument(help: "GGUF file, Hugging Face model directory, or checkpoint / run directory.") var model: String
    @Option(help: "Comma-separated task files, directories or names in tasks/.") var tasks: String
    @Option(help: "Where results.json and details/ go (default eval/MODEL-NAME).") var output: String?
    @Option(help: "Continuations scored per forward pass.") var batchSize: Int = 16
    @Option(help: "Model window in tokens (default: the model's, at most 2048).") var contextLength: Int?
    @Option(help: "Score only the first N items of each task.") var limit: Int?
    @Option(help: "Bootstrap resamples for errors of non-mean metrics.") var bootstrap: Int = 1000
    @Option(help: "Seed of sampling (maj@k) and the bootstrap.") var seed: UInt64 = 1234
    @Option(help: "Few-shot examples for every task (overrides the task files).") var numFewshot: Int?
    @Flag(help: "Put every prompt through the model's chat template as a user turn.") var applyChatTemplate = false
    @Option(help: "results.json layout: smol, or lm-eval (lm-evaluation-harness's keys, e.g. \"acc,none\").") var outputFormat: EvalOutputFormat = .smol
    @Flag(help: "Print the results JSON instead of a table.") var json = false
    @Option(help: "Input format of the model's GEMMs: fp32, or bf16 (inputs rounded to bfloat16, float32 sums; faster on long prompts, scores move by bf16 rounding).")
    var precision: MatmulPrecision = .fp32

    func validate() throws {
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be ≥ 1") }
        guard bootstrap >= 2 else { throw ValidationError("--bootstrap must be ≥ 2") }
        if let l = limit, l < 1 { throw ValidationError("--limit must be ≥ 1") }
        if let c = contextLength, c < 2 { throw ValidationError("--context-length must be ≥ 2") }
        if let n = numFewshot, n < 0 || n > 1000 { throw ValidationError("--num-fewshot must be in 0...1000") }
    }

    func run() throws {
        try runReportingErrors {
            let taskFiles = try EvalCommand.resolveTasks(tasks)
            let loaded = try taskFiles.map { try EvalTask.load($0, numFewshot: numFewshot, chatTemplate: applyChatTemplate ? true : nil) }
            var names = Set<String>()
            for t in loaded where !names.insert(t.spec.name).inserted { throw CLIError(message: "\(t.path): task name '\(t.spec.name)' used twice") }
            let pretrained = try PretrainedModel.load(model)
            var options = EvalOptions()
            options.batchSize = batchSize; options.contextLength = contextLength; options.limit = limit
            options.bootstrapResamples = bootstrap; options.seed = seed
            options.precision = precision.resolvedSayingWhy()
            let evaluator = Evaluator(model: pretrained, options: options)
            var results: [TaskResult] = [], details: [String: [ItemDetail]] = [:]
            let terminal = isatty(STDERR_FILENO) == 1
            for task in loaded {
                let (r, d) = try evaluator.run(task) { done, total in
                    if terminal { FileHandle.standardError.write(Data("\r\(task.spec.name): \(done)/\(total)".utf8)) }
                }
                if terminal { FileHandle.standardError.write(Data("\n".utf8)) }
                results.append(r); details[r.task] = d
            }
            let out = try EvalResults(model: pretrained, options: options, contextLength: evaluator.scorer.capacity, tasks: results)
            let name = ((model as NSString).lastPathComponent as NSString).deletingPathExtension
            let dir = output ?? ("eval" as NSString).appendingPathComponent(name)
            for r in results {
                guard let grid = r.needleGrid else { continue }
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                let svg = (dir as NSString).appendingPathComponent("\(r.task).heatmap.svg")
                guard FileManager.default.createFile(atPath: svg, contents: Data(NeedleCell.heatmapSVG(task: r.task, cells: grid).utf8)) else {
                    throw CLIError(message: "\(svg): cannot write")
                }
            }
            switch outputFormat {
            case .smol: try out.write(to: dir, details: details)
            case .lmEval: try out.write(to: dir, details: details, resultsData: try LMEvalResults(out).data())
            }
            if json {
                let data = outputFormat == .smol ? try EvalResults.encoder().encode(out) : try LMEvalResults(out).data()
                print(String(decoding: data, as: UTF8.self))
                return
            }
            let width = max(22, (results.map(\.task.count).max() ?? 0) + 2)
            print(padRight("task", width) + padRight("metric", 18) + "     value    stderr      n")
            for r in results {
                for m in r.spec.resolvedMetrics {
                    let v = r.metrics[m]!
                    print(padRight(r.task, width) + padRight(m, 18) + String(format: "%10.4f %9.4f %6d", v.value, v.stderr, r.items))
                }
            }
            print("wrote \(dir)/results.json and \(dir)/details/")
        }
    }

    /// Task files from a comma-separated list of files, directories and bare names in tasks/.
    static func resolveTasks(_ list: String) throws -> [String] {
        var files: [String] = []
        let fm = FileManager.default
        for raw in list.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !raw.isEmpty {
            var isDir: ObjCBool = false
            if fm.fileExists(atPath: raw, isDirectory: &isDir) {
                if isDir.boolValue {
                    let names = try fm.contentsOfDirectory(atPath: raw).filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") }.sorted()
                    guard !names.isEmpty else { throw CLIError(message: "\(raw): no task files (*.yaml) in this directory") }
                    files += names.map { (raw as NSString).appendingPathComponent($0) }
                } else { files.append(raw) }
            } else if fm.fileExists(atPath: "tasks/\(raw).yaml") {
                files.append("tasks/\(raw).yaml")
            } else {
                throw CLIError(message: "\(raw): no such task file, directory or task name in tasks/")
            }
        }
        guard !files.isEmpty else { throw CLIError(message: "--tasks: no tasks given") }
        return files
    }
}

enum EvalOutputFormat: String, ExpressibleByArgument, CaseIterable {
    case smol
    case lmEval = "lm-eval"
}

struct LeaderboardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "leaderboard",
        abstract: "Models × tasks with 95% confidence intervals and significance against each task's best.",
        discussion: """
        RESULTS are results.json files of `smol eval` (or their directories). Each task is ranked by
        its primary metric (acc_norm, qem, bits_per_byte) unless --metric is given; each model is
        compared with the task's best by a paired permutation test on the same items.

        Example:
          smol leaderboard eval/model-a eval/model-b --output leaderboard
        """)

    @Argument(help: "results.json files or directories holding one.") var results: [String]
    @Option(help: "Rank every task by this metric.") var metric: String?
    @Option(help: "Significance level.") var alpha: Double = 0.05
    @Option(help: "Write leaderboard.md and leaderboard.json into this directory.") var output: String?
    @Flag(help: "Print JSON instead of Markdown.") var json = false

    func run() throws {
        try runReportingErrors {
            guard alpha > 0, alpha < 1 else { throw CLIError(message: "--alpha must be in (0, 1)") }
            let board = try Leaderboard(files: results, metric: metric, alpha: alpha)
            let md = board.markdown()
            let data = try EvalResults.encoder().encode(board)
            if let dir = output {
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                try Data(md.utf8).write(to: URL(fileURLWithPath: (dir as NSString).appendingPathComponent("leaderboard.md")), options: .atomic)
                try data.write(to: URL(fileURLWithPath: (dir as NSString).appendingPathComponent("leaderboard.json")), options: .atomic)
            }
            print(json ? String(decoding: data, as: UTF8.self) : md)
        }
    }
}
