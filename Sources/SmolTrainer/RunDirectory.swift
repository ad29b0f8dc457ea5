import Foundation
import SmolModel

/// A training run's output directory: held by one process at a time, never trained into afresh
/// while it holds another run, and never resumed under a changed config by accident.
public enum RunDirectory {
    public static let lockName = ".lock"

    /// Holds OUT/.lock with an exclusive `flock` for the life of the process (the kernel releases it
    /// when the process ends, SIGKILL included, so a lock is never stale); the file says who holds it.
    /// A second `smol train` into the same directory stops with the holder's pid and host.
    public static func lock(_ dir: String) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = (dir as NSString).appendingPathComponent(lockName)
        let fd = open(path, O_RDWR | O_CREAT, 0o644)
        if fd < 0 { throw ConfigError.invalidFile(path: path, reason: "cannot open the run's lock file: \(String(cString: strerror(errno)))") }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let holder = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            close(fd)
            throw ConfigError.invalidFile(path: dir, reason: "another training holds this run directory (\(holder.isEmpty ? "unknown process" : holder)); wait for it or use another --out")
        }
        var host = [CChar](repeating: 0, count: 256)
        gethostname(&host, host.count)
        let line = "pid \(getpid()) on \(String(cString: host)) since \(ISO8601DateFormatter().string(from: Date()))\n"
        ftruncate(fd, 0)
        _ = line.withCString { write(fd, $0, strlen($0)) }
        held.append(fd)   // kept open: closing the descriptor would release the lock
    }
    nonisolated(unsafe) private static var held: [Int32] = []

    /// What a fresh (not resumed) run finds in its directory: nothing but the lock is fine; a
    /// previous run (metrics or checkpoints) is refused unless `force`, which deletes it first.
    public static func prepareFresh(_ dir: String, force: Bool) throws {
        let fm = FileManager.default
        let entries = ((try? fm.contentsOfDirectory(atPath: dir)) ?? []).filter { $0 != lockName }
        guard !entries.isEmpty else { return }
        guard force else {
            let steps = Checkpoint.list(root: (dir as NSString).appendingPathComponent("checkpoints")).map(\.step)
            let what = steps.isEmpty ? "files of another run (\(entries.sorted().prefix(3).joined(separator: ", ")))"
                                     : "a run with checkpoints up to step \(steps.last!)"
            throw ConfigError.invalidFile(path: dir, reason: "already holds \(what); --resume continues it, --force deletes it and starts over, or choose another --out")
        }
        for e in entries { try fm.removeItem(atPath: (dir as NSString).appendingPathComponent(e)) }
    }

    /// Checkpoint directories a killed save left behind (".tmp-step_…"), removed at start.
    @discardableResult
    public static func removeLeftovers(checkpoints root: String) -> [String] {
        let fm = FileManager.default
        let leftovers = ((try? fm.contentsOfDirectory(atPath: root)) ?? []).filter { $0.hasPrefix(".tmp-") }
        for l in leftovers { try? fm.removeItem(atPath: (root as NSString).appendingPathComponent(l)) }
        return leftovers
    }

    /// Config keys a resumed run may change: how long it runs and how it reports, not what it
    /// trains; and its topology (`parallel`), since checkpoints hold full tensors and every rank's
    /// data position, so any topology resumes them.
    public static let resumableKeys: [String] = ["parallel",
        "training.steps", "training.token_budget", "training.eval_every", "training.eval_batches", "training.checkpoint_every",
        "training.keep_checkpoints", "training.sample_prompts", "training.sample_tokens", "training.eval_tasks",
        "training.eval_tasks_every", "training.eval_tasks_limit", "training.peak_gflops", "training.preflight",
        "training.preflight_gemm_gflops", "baseline",
    ]

    /// The keys (dotted paths) whose values differ between two configs, each with both values.
    public static func differences(_ saved: TrainConfig, _ now: TrainConfig) throws -> [(key: String, saved: String, now: String)] {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let a = try JSONSerialization.jsonObject(with: enc.encode(saved)), b = try JSONSerialization.jsonObject(with: enc.encode(now))
        var out: [(String, String, String)] = []
        func text(_ v: Any?) -> String {
            guard let v, !(v is NSNull) else { return "(unset)" }
            if let d = try? JSONSerialization.data(withJSONObject: v, options: [.sortedKeys, .fragmentsAllowed]) { return String(decoding: d, as: UTF8.self) }
            return "\(v)"
        }
        func walk(_ x: Any?, _ y: Any?, _ path: String) {
            if let dx = x as? [String: Any], let dy = y as? [String: Any] {
                for k in Set(dx.keys).union(dy.keys).sorted() { walk(dx[k], dy[k], path.isEmpty ? k : path + "." + k) }
                return
            }
            if text(x) != text(y) { out.append((path, text(x), text(y))) }
        }
        walk(a, b, "")
        return out
    }
}
