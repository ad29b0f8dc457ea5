import Foundation
import SmolTrainer

/// `smol audit contamination`'s output: per task the statistical audit and what the model's
/// recorded lineage says about the task (Provenance.flags).
public struct ContaminationReport: Encodable {
    public struct Task: Encodable {
        public let audit: ContaminationAudit.TaskAudit
        public let lineage: [String]
        /// Flagged by the scores (contaminated or suspect) or by the lineage.
        public var flagged: Bool { audit.verdict != .noEvidence || !lineage.isEmpty }
        public init(audit: ContaminationAudit.TaskAudit, lineage: [String]) { self.audit = audit; self.lineage = lineage }
        enum CodingKeys: String, CodingKey { case audit, lineage, flagged }
        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(audit, forKey: .audit); try c.encode(lineage, forKey: .lineage); try c.encode(flagged, forKey: .flagged)
        }
    }
    public let model: String
    public let k: Double
    public let calibration: String?
    public let tasks: [Task]
    public let provenance: Provenance?

    public init(model: String, k: Double, calibration: String?, tasks: [Task], provenance: Provenance?) {
        self.model = model; self.k = k; self.calibration = calibration; self.tasks = tasks; self.provenance = provenance
    }

    public func table() -> String {
        func f(_ x: Double) -> String { String(format: "%+.3f", x) }
        func est(_ e: ContaminationAudit.Estimate?) -> String { e.map { "\(f($0.mean)) [\(f($0.low)), \(f($0.high))]" } ?? "–" }
        var s = "contamination audit of \(model) (Min-K%++ at k = \(Int(k * 100))%; calibration: \(calibration ?? "none"))\n"
        s += "task                      items  Min-K%++  shift vs calibration [95% CI]  perturbation gap [95% CI]  AUC    verdict\n"
        for t in tasks {
            let a = t.audit
            let mean = a.items.map(\.minKpp).reduce(0, +) / Double(max(a.items.count, 1))
            s += a.task.padding(toLength: 25, withPad: " ", startingAt: 0) + " " + String(format: "%5d  %8.3f  ", a.items.count, mean)
            s += est(a.shift).padding(toLength: 31, withPad: " ", startingAt: 0) + "  " + est(a.gap).padding(toLength: 25, withPad: " ", startingAt: 0)
            s += "  " + (a.auc.map { String(format: "%.3f", $0) } ?? "–    ") + "  " + a.verdict.rawValue + (t.lineage.isEmpty ? "" : " + lineage") + "\n"
            s += "  scores: \(a.reason)\n"
            for l in t.lineage { s += "  lineage: \(l)\n" }
        }
        if provenance == nil { s += "(not a smol run: no recorded lineage)\n" }
        return s
    }
}
