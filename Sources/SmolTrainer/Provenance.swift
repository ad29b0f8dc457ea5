import Foundation
import SmolData
import SmolModel

/// What `smol data decontaminate --mark` found for one task in one data file: written beside the
/// file as FILE.decontamination.json ("overlaps": items share an n-gram with its documents;
/// "clean": none do; "decontaminated": a --clean output, the touching documents removed).
public struct DecontaminationMark: Codable, Sendable, Equatable {
    public var task: String
    public var itemsSha256: String
    public var items: Int
    public var touched: Int
    public var n: Int
    public var status: String
    enum CodingKeys: String, CodingKey { case task, itemsSha256 = "items_sha256", items, touched, n, status }
    public init(task: String, itemsSha256: String, items: Int, touched: Int, n: Int, status: String) {
        self.task = task; self.itemsSha256 = itemsSha256; self.items = items; self.touched = touched; self.n = n; self.status = status
    }

    public static func sidecar(of file: String) -> String { file + ".decontamination.json" }
    public static func read(beside file: String) -> [DecontaminationMark]? {
        guard let data = FileManager.default.contents(atPath: sidecar(of: file)) else { return nil }
        struct File: Decodable { let tasks: [DecontaminationMark] }
        return (try? JSONDecoder().decode(File.self, from: data))?.tasks
    }
    public static func write(_ marks: [DecontaminationMark], beside file: String) throws {
        struct File: Encodable { let format = 1; let tasks: [DecontaminationMark] }
        let e = JSONEncoder(); e.outputFormatting = [.prettyPrinted, .sortedKeys]
        let path = sidecar(of: file), tmp = path + ".tmp"
        try e.encode(File(tasks: marks)).write(to: URL(fileURLWithPath: tmp))
        guard rename(tmp, path) == 0 else { throw ConfigError.invalidFile(path: path, reason: "cannot write the decontamination mark") }
    }
}

/// A smol run's lineage, written to RUN/provenance.json when it starts: its data sources (each
/// input's decontamination marks, or "unchecked"), the model it started from and its teacher
/// (path, weights fingerprint, and their own provenance when they are smol runs), and the verdicts
/// `smol audit contamination` recorded for it. Read by `smol eval` (into results.json), by the
/// leaderboard and by the audit.
public final class Provenance: Codable, @unchecked Sendable {
    public struct DataSource: Codable, Sendable {
        public var source: String
        public var inputs: [String]
        /// Inputs with no mark beside them: their overlap with any task is unknown.
        public var unchecked: [String]
        public var marks: [DecontaminationMark]
    }
    public struct Model: Codable, Sendable {
        public var path: String
        public var fingerprint: String?
        public var provenance: Provenance?
    }
    public struct AuditMark: Codable, Sendable {
        public var verdict: String
        public var reason: String
        public var itemsSha256: String?
        enum CodingKeys: String, CodingKey { case verdict, reason, itemsSha256 = "items_sha256" }
        public init(verdict: String, reason: String, itemsSha256: String?) { self.verdict = verdict; self.reason = reason; self.itemsSha256 = itemsSha256 }
    }

    public var run: String
    public var data: [DataSource]
    public var initFrom: Model?
    public var teacher: Model?
    /// task name → the last audit's verdict on this run's model.
    public var audits: [String: AuditMark]
    enum CodingKeys: String, CodingKey { case run, data, initFrom = "init_from", teacher, audits }

    public init(run: String, data: [DataSource], initFrom: Model?, teacher: Model?, audits: [String: AuditMark] = [:]) {
        self.run = run; self.data = data; self.initFrom = initFrom; self.teacher = teacher; self.audits = audits
    }

    public static let fileName = "provenance.json"

    /// The run a model path belongs to: the run directory itself, or a checkpoint's run.
    public static func runDirectory(ofModel path: String) -> String? {
        var dir = (path as NSString).standardizingPath
        for _ in 0..<3 {
            if FileManager.default.fileExists(atPath: (dir as NSString).appendingPathComponent(fileName)) { return dir }
            dir = (dir as NSString).deletingLastPathComponent
            if dir.isEmpty || dir == "/" { return nil }
        }
        return nil
    }

    /// The provenance of the run `path` belongs to, nil when it is not a smol run.
    public static func lineage(ofModel path: String) throws -> Provenance? {
        guard let run = runDirectory(ofModel: path) else { return nil }
        let file = (run as NSString).appendingPathComponent(fileName)
        guard let data = FileManager.default.contents(atPath: file) else { return nil }
        do { return try JSONDecoder().decode(Provenance.self, from: data) }
        catch { throw ConfigError.invalidFile(path: file, reason: "not a provenance record: \(error)") }
    }

    public func write(to runDirectory: String) throws {
        let e = JSONEncoder(); e.outputFormatting = [.prettyPrinted, .sortedKeys]
        let path = (runDirectory as NSString).appendingPathComponent(Provenance.fileName), tmp = path + ".tmp"
        try e.encode(self).write(to: URL(fileURLWithPath: tmp))
        guard rename(tmp, path) == 0 else { throw ConfigError.invalidFile(path: path, reason: "cannot write the provenance record") }
    }

    /// A model's entry: its weights' fingerprint and, for a smol run, its provenance.
    public static func model(_ path: String, fingerprint: String?) -> Model {
        Model(path: (path as NSString).standardizingPath, fingerprint: fingerprint, provenance: try? lineage(ofModel: path))
    }

    /// The data sources of a run: each shard's manifest inputs and the marks beside them.
    public static func dataSources(_ sources: [(name: String, shards: [String])]) -> [DataSource] {
        sources.map { src in
            var inputs: [String] = [], unchecked: [String] = [], marks: [DecontaminationMark] = []
            for l in DataLineage.of(source: src.name, shards: src.shards) {
                let files = l.inputs.isEmpty ? src.shards : l.inputs
                for f in files where !inputs.contains(f) {
                    inputs.append(f)
                    if let m = DecontaminationMark.read(beside: f) { marks += m } else { unchecked.append(f) }
                }
            }
            return DataSource(source: src.name, inputs: inputs, unchecked: unchecked, marks: marks)
        }
    }

    /// Why a score on `task` (its name and items' SHA-256) cannot be taken at face value: data that
    /// overlaps it, an audit that flagged this model, or the same in its teacher's or initial model's
    /// lineage. Empty when nothing in the recorded lineage touches the task.
    public func flags(task: String, itemsSha256: String?) -> [String] {
        func same(_ name: String, _ hash: String?) -> Bool { name == task || (hash != nil && hash == itemsSha256) }
        var out: [String] = []
        for d in data {
            for m in d.marks where same(m.task, m.itemsSha256) && m.status == "overlaps" {
                out.append("data '\(d.source)' overlaps \(task): \(m.touched) of \(m.items) items share a \(m.n)-gram")
            }
        }
        for (name, a) in audits.sorted(by: { $0.key < $1.key }) where same(name, a.itemsSha256) && a.verdict != "no_evidence" {
            out.append("audit of \(run): \(a.verdict) on \(task)")
        }
        for (role, m) in [("teacher", teacher), ("init model", initFrom)] {
            guard let m, let p = m.provenance else { continue }
            out += p.flags(task: task, itemsSha256: itemsSha256).map { "\(role) \(m.path): \($0)" }
        }
        return out
    }

    /// Records an audit's verdict in the run's provenance.json.
    public static func recordAudit(ofModel path: String, task: String, mark: AuditMark) throws {
        guard let run = runDirectory(ofModel: path), let p = try lineage(ofModel: path) else { return }
        p.audits[task] = mark
        try p.write(to: run)
    }
}
