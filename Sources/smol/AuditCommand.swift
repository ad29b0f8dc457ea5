import ArgumentParser
import Foundation
import SmolEval
import SmolWeights
import SmolTrainer

struct AuditCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Audit a model for benchmark contamination.",
        subcommands: [Contamination.self])

    struct Contamination: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Min-K%++ and a perturbation gap per item, per task a bootstrap interval and a verdict, and the model's lineage.",
            discussion: """
            Each item's text (zero-shot question and gold answer, as training data would hold it) is
            scored by Min-K%++ (Zhang et al., 2024) and against a perturbed copy (options reordered,
            digits changed, or a distractor answer). With --calibration (items the model cannot have
            seen: written after its data, or held out), the items' scores are compared with theirs;
            without, only a meaning-neutral perturbation gap gives a verdict. When MODEL is a smol
            run, its provenance is read too: data that overlaps the task, a teacher or an initial
            model whose own lineage touches it.

            Examples:
              smol audit contamination runs/student --tasks smol_facts_en --calibration held_out.yaml
              smol audit contamination SmolLM2-135M-Instruct.Q4_1.gguf --tasks tasks/smol_facts_en_mcf.yaml --json
            """)

        @Argument(help: "GGUF file, Hugging Face model directory, or checkpoint / run directory.") var model: String
        @Option(help: "Comma-separated task files, directories or names in tasks/.") var tasks: String
        @Option(help: "A task file of clean calibration items (same format), compared with every task's items.") var calibration: String?
        @Option(help: "Min-K%++'s k: the share of lowest-scoring positions averaged.") var k: Double = 0.2
        @Option(help: "Bootstrap resamples for the intervals.") var bootstrap: Int = 2000
        @Option(help: "Seed of the bootstrap.") var seed: UInt64 = 1234
        @Option(help: "Audit only the first N items of each task.") var limit: Int?
        @Flag(help: "Print the audit as JSON (every item's scores included).") var json = false

        func validate() throws {
            guard k > 0 && k <= 1 else { throw ValidationError("--k must be in (0, 1], got \(k)") }
            guard bootstrap >= 100 && bootstrap <= 1_000_000 else { throw ValidationError("--bootstrap must be in 100...1000000") }
            if let l = limit, l < 2 { throw ValidationError("--limit must be ≥ 2") }
        }

        func run() throws {
            try runReportingErrors {
                let taskFiles = try EvalCommand.resolveTasks(tasks)
                let loaded = try taskFiles.map { try EvalTask.load($0) }
                let calib = try calibration.map { try EvalTask.load($0) }
                var options = ContaminationAudit.Options()
                options.k = k; options.resamples = bootstrap; options.seed = seed; options.limit = limit
                let audit = ContaminationAudit(model: try PretrainedModel.load(model, decodeWeights: false), options: options)
                let lineage = try Provenance.lineage(ofModel: model)
                // The lineage as recorded before this audit: a verdict recorded on an earlier audit is not evidence for this one.
                lineage?.audits = [:]
                var reports: [ContaminationReport.Task] = []
                for task in loaded {
                    let a = try audit.audit(task, calibration: calib)
                    reports.append(.init(audit: a, lineage: lineage?.flags(task: task.spec.name, itemsSha256: task.itemsHash) ?? []))
                    // The verdict joins the run's lineage; a run directory this user cannot write keeps the audit's output only.
                    do {
                        try Provenance.recordAudit(ofModel: model, task: task.spec.name,
                                                   mark: .init(verdict: a.verdict.rawValue, reason: a.reason, itemsSha256: task.itemsHash))
                    } catch { FileHandle.standardError.write(Data("warning: the verdict is not recorded in the run's provenance: \(error)\n".utf8)) }
                }
                let report = ContaminationReport(model: model, k: k, calibration: calibration, tasks: reports, provenance: lineage)
                if json { printJSON(report); return }
                print(report.table())
            }
        }
    }
}
