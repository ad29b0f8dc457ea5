import Foundation
import GRDB

public struct RunStoreError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One training run as the store knows it.
public struct RunRecord: Codable, Sendable, Equatable {
    public var id: Int64
    public var name: String
    public var outputDir: String
    /// The run's full effective config as JSON (defaults filled in), for diffs.
    public var config: String
    public var tags: [String]
    public var codeVersion: String
    public var host: String
    public var pid: Int
    public var startedAt: Double
    public var endedAt: Double?
    public var heartbeatAt: Double
    /// running, finished, failed or crashed
    public var status: String
    public var cores: Int
    public var coreHours: Double
    public var gpuHours: Double
    public var parameters: Int
    public var flopsPerToken: Double
    public var baseline: String?
    /// Processes of the run (data parallel × tensor parallel), its ZeRO stage and the hosts it ran on.
    public var worldSize: Int = 1
    public var dp: Int = 1
    public var tp: Int = 1
    public var zero: Int = 0
    public var hosts: [String] = []
    /// Where its data came from, as JSON: SmolData's `[DataLineage]`, from the shards' manifests.
    public var dataLineage = "[]"

    enum CodingKeys: String, CodingKey {
        case id, name, config, tags, host, pid, status, cores, parameters, baseline, dp, tp, zero, hosts, worldSize = "world_size", dataLineage = "data_lineage"
        case outputDir = "output_dir", codeVersion = "code_version", startedAt = "started_at", endedAt = "ended_at"
        case heartbeatAt = "heartbeat_at", coreHours = "core_hours", gpuHours = "gpu_hours", flopsPerToken = "flops_per_token"
    }
}

public struct MetricPoint: Codable, Sendable, Equatable {
    public var step: Int
    public var tokens: Int
    public var value: Double
}

public struct RunEvent: Codable, Sendable, Equatable {
    public var step: Int
    public var tokens: Int
    /// checkpoint, spike, rollback, alert, resume
    public var kind: String
    public var message: String
    public var time: Double
}

/// The experiment store: SQLite through GRDB, in WAL mode with a busy timeout so several trainings
/// can write at once. Schema changes are versioned migrations (GRDB's DatabaseMigrator).
public final class RunStore {
    public let path: String
    let db: DatabasePool

    public static var defaultPath: String { ProcessInfo.processInfo.environment["SMOL_STORE"] ?? ".smol/runs.sqlite" }

    public init(path: String = RunStore.defaultPath) throws {
        self.path = path
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        var config = Configuration()
        config.busyMode = .timeout(30)
        do {
            db = try DatabasePool(path: path, configuration: config)
            try RunStore.migrator.migrate(db)
        } catch {
            throw RunStoreError("\(path): cannot open the run store: \(error)")
        }
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.create(table: "run") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("name", .text).notNull()
                t.column("output_dir", .text).notNull()
                t.column("config", .text).notNull()
                t.column("tags", .text).notNull().defaults(to: "[]")
                t.column("code_version", .text).notNull()
                t.column("host", .text).notNull()
                t.column("pid", .integer).notNull()
                t.column("started_at", .double).notNull()
                t.column("ended_at", .double)
                t.column("heartbeat_at", .double).notNull()
                t.column("status", .text).notNull()
                t.column("cores", .integer).notNull()
                t.column("core_hours", .double).notNull().defaults(to: 0)
                t.column("gpu_hours", .double).notNull().defaults(to: 0)
                t.column("parameters", .integer).notNull()
                t.column("flops_per_token", .double).notNull()
                t.column("baseline", .text)
            }
            try db.create(table: "metric") { t in
                t.column("run_id", .integer).notNull().references("run", onDelete: .cascade)
                t.column("step", .integer).notNull()
                t.column("tokens", .integer).notNull()
                t.column("name", .text).notNull()
                t.column("value", .double).notNull()
                t.column("time", .double).notNull()
            }
            try db.create(index: "metric_by_run", on: "metric", columns: ["run_id", "name", "step"])
            try db.create(table: "eval_result") { t in
                t.column("run_id", .integer).notNull().references("run", onDelete: .cascade)
                t.column("step", .integer).notNull()
                t.column("tokens", .integer).notNull()
                t.column("task", .text).notNull()
                t.column("metric", .text).notNull()
                t.column("value", .double).notNull()
                t.column("stderr", .double)
            }
            try db.create(index: "eval_by_run", on: "eval_result", columns: ["run_id", "task", "metric", "step"])
            try db.create(table: "event") { t in
                t.column("run_id", .integer).notNull().references("run", onDelete: .cascade)
                t.column("step", .integer).notNull()
                t.column("tokens", .integer).notNull()
                t.column("kind", .text).notNull()
                t.column("message", .text).notNull()
                t.column("time", .double).notNull()
            }
        }
        m.registerMigration("v2-topology") { db in
            try db.alter(table: "run") { t in
                t.add(column: "world_size", .integer).notNull().defaults(to: 1)
                t.add(column: "dp", .integer).notNull().defaults(to: 1)
                t.add(column: "tp", .integer).notNull().defaults(to: 1)
                t.add(column: "zero", .integer).notNull().defaults(to: 0)
                t.add(column: "hosts", .text).notNull().defaults(to: "[]")
            }
        }
        // Core-hours are summed per segment (a run resumed after a crash has several).
        m.registerMigration("v3-segments") { db in
            try db.alter(table: "run") { t in t.add(column: "segment_started_at", .double) }
            try db.execute(sql: "UPDATE run SET segment_started_at = started_at")
        }
        m.registerMigration("v4-data-lineage") { db in
            try db.alter(table: "run") { t in t.add(column: "data_lineage", .text).notNull().defaults(to: "[]") }
        }
        return m
    }

    /// The migrations applied to this file, oldest first.
    public func appliedMigrations() throws -> [String] {
        try db.read { try RunStore.migrator.appliedMigrations($0) }
    }

    // MARK: writing

    public struct NewRun {
        public var name: String, outputDir: String, config: String, tags: [String]
        public var parameters: Int, flopsPerToken: Double, cores: Int
        public var baseline: String?
        public var topology = Topology()
        /// JSON, SmolData's `[DataLineage]`.
        public var dataLineage = "[]"
        public init(name: String, outputDir: String, config: String, tags: [String], parameters: Int, flopsPerToken: Double, cores: Int,
                    baseline: String? = nil, topology: Topology = Topology(), dataLineage: String = "[]") {
            self.name = name; self.outputDir = outputDir; self.config = config; self.tags = tags
            self.parameters = parameters; self.flopsPerToken = flopsPerToken; self.cores = cores; self.baseline = baseline
            self.topology = topology; self.dataLineage = dataLineage
        }
    }

    /// How a run spans processes and hosts.
    public struct Topology: Sendable {
        public var worldSize = 1, dp = 1, tp = 1, zero = 0
        public var hosts: [String] = [RunStore.hostName]
        public init() {}
        public init(worldSize: Int, dp: Int, tp: Int, zero: Int, hosts: [String]) {
            self.worldSize = worldSize; self.dp = dp; self.tp = tp; self.zero = zero; self.hosts = hosts
        }
    }

    /// Records a new run as running (or, resuming, marks the run of the same output directory
    /// running again and drops its rows past the step it resumes from).
    public func begin(_ r: NewRun, resumeFromStep: Int? = nil) throws -> Int64 {
        let now = Date().timeIntervalSince1970
        let tags = String(decoding: try JSONEncoder().encode(r.tags), as: UTF8.self)
        let hostsJSON = String(decoding: try JSONEncoder().encode(r.topology.hosts), as: UTF8.self)
        return try db.write { db in
            if let step = resumeFromStep,
               let id = try Int64.fetchOne(db, sql: "SELECT id FROM run WHERE output_dir = ? ORDER BY id DESC LIMIT 1", arguments: [r.outputDir]) {
                // A segment that died without being marked crashed yet: count its compute up to its last heartbeat.
                try db.execute(sql: """
                    UPDATE run SET core_hours = core_hours + MAX(0, heartbeat_at - COALESCE(segment_started_at, started_at)) * cores / 3600.0
                    WHERE id = ? AND status = 'running'
                    """, arguments: [id])
                try db.execute(sql: """
                    UPDATE run SET status = 'running', pid = ?, host = ?, heartbeat_at = ?, ended_at = NULL, segment_started_at = ?,
                                   world_size = ?, dp = ?, tp = ?, zero = ?, hosts = ?, data_lineage = ? WHERE id = ?
                    """, arguments: [Int(getpid()), RunStore.hostName, now, now, r.topology.worldSize, r.topology.dp, r.topology.tp,
                                     r.topology.zero, hostsJSON, r.dataLineage, id])
                for table in ["metric", "eval_result", "event"] {
                    try db.execute(sql: "DELETE FROM \(table) WHERE run_id = ? AND step > ?", arguments: [id, step])
                }
                try db.execute(sql: "INSERT INTO event (run_id, step, tokens, kind, message, time) VALUES (?, ?, 0, 'resume', ?, ?)",
                               arguments: [id, step, "resumed from step \(step)", now])
                return id
            }
            try db.execute(sql: """
                INSERT INTO run (name, output_dir, config, tags, code_version, host, pid, started_at, heartbeat_at, status, cores,
                                 parameters, flops_per_token, baseline, world_size, dp, tp, zero, hosts, segment_started_at, data_lineage)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [r.name, r.outputDir, r.config, tags, RunStore.codeVersion, RunStore.hostName, Int(getpid()), now, now,
                                 r.cores, r.parameters, r.flopsPerToken, r.baseline, r.topology.worldSize, r.topology.dp, r.topology.tp,
                                 r.topology.zero, hostsJSON, now, r.dataLineage])
            return db.lastInsertedRowID
        }
    }

    /// Appends metric values of one step (and refreshes the run's heartbeat).
    public func record(run: Int64, step: Int, tokens: Int, metrics: [(String, Double)]) throws {
        let now = Date().timeIntervalSince1970
        try db.write { db in
            for (name, value) in metrics where value.isFinite {
                try db.execute(sql: "INSERT INTO metric (run_id, step, tokens, name, value, time) VALUES (?, ?, ?, ?, ?, ?)",
                               arguments: [run, step, tokens, name, value, now])
            }
            try db.execute(sql: "UPDATE run SET heartbeat_at = ? WHERE id = ?", arguments: [now, run])
        }
    }

    public func recordEval(run: Int64, step: Int, tokens: Int, task: String, metric: String, value: Double, stderr: Double?) throws {
        try db.write { db in
            try db.execute(sql: "INSERT INTO eval_result (run_id, step, tokens, task, metric, value, stderr) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           arguments: [run, step, tokens, task, metric, value, stderr])
        }
    }

    public func recordEvent(run: Int64, step: Int, tokens: Int, kind: String, message: String) throws {
        try db.write { db in
            try db.execute(sql: "INSERT INTO event (run_id, step, tokens, kind, message, time) VALUES (?, ?, ?, ?, ?, ?)",
                           arguments: [run, step, tokens, kind, message, Date().timeIntervalSince1970])
        }
    }

    /// Ends a run: finished or failed, with the compute it spent.
    public func finish(run: Int64, status: String, coreHours: Double) throws {
        try db.write { db in
            try db.execute(sql: "UPDATE run SET status = ?, ended_at = ?, core_hours = core_hours + ? WHERE id = ?",
                           arguments: [status, Date().timeIntervalSince1970, coreHours, run])
        }
    }

    /// Drops a run's metric and evaluation rows past `step` (a rollback re-runs them); events stay.
    public func truncate(run: Int64, afterStep step: Int) throws {
        try db.write { db in
            for table in ["metric", "eval_result"] {
                try db.execute(sql: "DELETE FROM \(table) WHERE run_id = ? AND step > ?", arguments: [run, step])
            }
        }
    }

    public func addTags(run: Int64, _ tags: [String]) throws {
        var current = try self.run(run).tags
        for t in tags where !current.contains(t) { current.append(t) }
        let json = String(decoding: try JSONEncoder().encode(current), as: UTF8.self)
        try db.write { try $0.execute(sql: "UPDATE run SET tags = ? WHERE id = ?", arguments: [json, run]) }
    }

    // MARK: reading

    /// Runs left "running" by a process that no longer exists on this host (or silent for an
    /// hour elsewhere) become "crashed", with their compute up to the last heartbeat.
    public func markCrashedRuns() throws {
        let host = RunStore.hostName, now = Date().timeIntervalSince1970
        try db.write { db in
            for row in try Row.fetchAll(db, sql: "SELECT id, host, pid, COALESCE(segment_started_at, started_at) AS segment, heartbeat_at, cores FROM run WHERE status = 'running'") {
                let h: String = row["host"], pid: Int = row["pid"], beat: Double = row["heartbeat_at"]
                let dead = h == host ? (kill(pid_t(pid), 0) != 0 && errno == ESRCH) : now - beat > 3600
                if dead {
                    let segment: Double = row["segment"], cores: Int = row["cores"]
                    try db.execute(sql: "UPDATE run SET status = 'crashed', ended_at = heartbeat_at, core_hours = core_hours + ? WHERE id = ?",
                                   arguments: [max(0, beat - segment) * Double(cores) / 3600, row["id"] as Int64])
                }
            }
        }
    }

    static func record(_ row: Row) throws -> RunRecord {
        let tags = (try? JSONDecoder().decode([String].self, from: Data((row["tags"] as String).utf8))) ?? []
        return RunRecord(id: row["id"], name: row["name"], outputDir: row["output_dir"], config: row["config"], tags: tags,
                         codeVersion: row["code_version"], host: row["host"], pid: row["pid"], startedAt: row["started_at"],
                         endedAt: row["ended_at"], heartbeatAt: row["heartbeat_at"], status: row["status"], cores: row["cores"],
                         coreHours: row["core_hours"], gpuHours: row["gpu_hours"], parameters: row["parameters"],
                         flopsPerToken: row["flops_per_token"], baseline: row["baseline"], worldSize: row["world_size"], dp: row["dp"],
                         tp: row["tp"], zero: row["zero"],
                         hosts: (try? JSONDecoder().decode([String].self, from: Data((row["hosts"] as String).utf8))) ?? [],
                         dataLineage: row["data_lineage"])
    }

    public func runs(tag: String? = nil) throws -> [RunRecord] {
        try markCrashedRuns()
        let all = try db.read { db in try Row.fetchAll(db, sql: "SELECT * FROM run ORDER BY id").map(RunStore.record) }
        return tag.map { t in all.filter { $0.tags.contains(t) } } ?? all
    }

    public func run(_ id: Int64) throws -> RunRecord {
        guard let r = try db.read({ db in try Row.fetchOne(db, sql: "SELECT * FROM run WHERE id = ?", arguments: [id]) }) else {
            throw RunStoreError("no run \(id) in \(path)")
        }
        return try RunStore.record(r)
    }

    /// A run by id, by name (the newest of that name) or by output directory.
    public func find(_ key: String) throws -> RunRecord {
        try markCrashedRuns()
        if let id = Int64(key) { return try run(id) }
        let row = try db.read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM run WHERE name = ? OR output_dir = ? ORDER BY id DESC LIMIT 1", arguments: [key, key])
        }
        guard let row else { throw RunStoreError("no run named '\(key)' in \(path) (smol runs list shows them)") }
        return try RunStore.record(row)
    }

    /// The series of one metric ("loss", "val_loss", or "task/metric" from evaluations).
    public func series(run: Int64, metric: String) throws -> [MetricPoint] {
        try db.read { db in
            var rows = try Row.fetchAll(db, sql: "SELECT step, tokens, value FROM metric WHERE run_id = ? AND name = ? ORDER BY step",
                                        arguments: [run, metric])
            if rows.isEmpty, let slash = metric.firstIndex(of: "/") {
                rows = try Row.fetchAll(db, sql: "SELECT step, tokens, value FROM eval_result WHERE run_id = ? AND task = ? AND metric = ? ORDER BY step",
                                        arguments: [run, String(metric[..<slash]), String(metric[metric.index(after: slash)...])])
            }
            return rows.map { MetricPoint(step: $0["step"], tokens: $0["tokens"], value: $0["value"]) }
        }
    }

    public func metricNames(run: Int64) throws -> [String] {
        try db.read { db in
            try String.fetchAll(db, sql: "SELECT DISTINCT name FROM metric WHERE run_id = ? ORDER BY name", arguments: [run])
                + String.fetchAll(db, sql: "SELECT DISTINCT task || '/' || metric FROM eval_result WHERE run_id = ? ORDER BY 1", arguments: [run])
        }
    }

    public struct EvalRow: Codable, Sendable, Equatable {
        public var step: Int, tokens: Int, task: String, metric: String, value: Double, stderr: Double?
    }

    public func evalResults(run: Int64) throws -> [EvalRow] {
        try db.read { db in
            try Row.fetchAll(db, sql: "SELECT step, tokens, task, metric, value, stderr FROM eval_result WHERE run_id = ? ORDER BY step, task, metric", arguments: [run])
                .map { EvalRow(step: $0["step"], tokens: $0["tokens"], task: $0["task"], metric: $0["metric"], value: $0["value"], stderr: $0["stderr"]) }
        }
    }

    public func events(run: Int64) throws -> [RunEvent] {
        try db.read { db in
            try Row.fetchAll(db, sql: "SELECT step, tokens, kind, message, time FROM event WHERE run_id = ? ORDER BY time, step", arguments: [run])
                .map { RunEvent(step: $0["step"], tokens: $0["tokens"], kind: $0["kind"], message: $0["message"], time: $0["time"]) }
        }
    }

    public func counts(run: Int64) throws -> (metrics: Int, evals: Int, events: Int) {
        try db.read { db in
            (try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM metric WHERE run_id = ?", arguments: [run]) ?? 0,
             try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM eval_result WHERE run_id = ?", arguments: [run]) ?? 0,
             try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM event WHERE run_id = ?", arguments: [run]) ?? 0)
        }
    }

    // MARK: environment

    public static var hostName: String { ProcessInfo.processInfo.hostName }

    /// `git describe --always --dirty` of the working directory, or "unknown".
    public static let codeVersion: String = {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["git", "describe", "--always", "--dirty"]
        let out = Pipe()
        p.standardOutput = out; p.standardError = Pipe()
        do { try p.run(); p.waitUntilExit() } catch { return "unknown" }
        let s = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return p.terminationStatus == 0 && !s.isEmpty ? s : "unknown"
    }()
}
