import Foundation
import SmolData
import SmolModel
import SmolTensor

/// The frozen reference model of a preference run is the model it starts from, so its summed
/// completion log-probabilities are computed once, before step 1, for every pair (training and
/// held out). They are cached under a key of (the initial weights, the pairs as rows), so another
/// run on the same model and data (another β, another objective) reads them instead of scoring
/// again; and a copy in the run directory serves `--resume`, when the initial weights are gone.
public enum ReferenceLogProbs {
    struct File: Codable {
        var key: String
        /// Per set of pairs, 2 per pair (chosen, rejected).
        var sets: [[Double]]
    }
    public static let runFileName = "reference_logps.json"

    /// $SMOL_CACHE_DIR, else $XDG_CACHE_HOME/smol, else ~/.cache/smol; then reference-logps/.
    public static var cacheDirectory: String {
        let env = ProcessInfo.processInfo.environment
        let root = env["SMOL_CACHE_DIR"] ?? env["XDG_CACHE_HOME"].map { $0 + "/smol" } ?? (NSHomeDirectory() + "/.cache/smol")
        return root + "/reference-logps"
    }

    /// FNV-1a over the weights' 64-bit words, then over the pairs' fingerprints.
    static func key(model: LlamaModel, sets: [PreferencePairs]) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        let p = model.parameters.values
        UnsafeRawPointer(p.pointer).withMemoryRebound(to: UInt64.self, capacity: p.count / 2) { words in
            for i in 0..<(p.count / 2) { h = (h ^ words[i]) &* 0x100_0000_01b3 }
        }
        let data = sets.map { $0.fingerprint() }.joined(separator: ",")
        return String(format: "%016llx-", h) + DataManifest.fnv1a64(Data((data + String(model.parameters.count)).utf8))
    }

    /// Gives every set its reference log-probs: from the run directory on resume, else from the
    /// cache, else scored with `model` (ranks split the work). Returns what it did, for the log.
    public static func attach(to sets: [PreferencePairs], model: LlamaModel, microBatch: Int, runDirectory: String, resume: Bool,
                              collectives: Collectives) throws -> String {
        let runFile = (runDirectory as NSString).appendingPathComponent(runFileName)
        if resume {
            guard let data = FileManager.default.contents(atPath: runFile), let f = try? JSONDecoder().decode(File.self, from: data),
                  f.sets.map(\.count) == sets.map({ 2 * $0.count }) else {
                throw ConfigError.invalidFile(path: runFile, reason: "the reference log-probs of the run's pairs are missing or do not match its data; start the run again")
            }
            for (set, values) in zip(sets, f.sets) { set.reference = values }
            return "reference log-probs of \(sets.reduce(0) { $0 + $1.count }) pairs read from \(runFile)"
        }
        let key = key(model: model, sets: sets)
        let cacheFile = (cacheDirectory as NSString).appendingPathComponent(key + ".json")
        var how: String
        if let data = FileManager.default.contents(atPath: cacheFile), let f = try? JSONDecoder().decode(File.self, from: data),
           f.key == key, f.sets.map(\.count) == sets.map({ 2 * $0.count }) {
            for (set, values) in zip(sets, f.sets) { set.reference = values }
            how = "read from the cache \(cacheFile)"
        } else {
            let t0 = Date()
            for set in sets { set.reference = try score(set, model: model, microBatch: microBatch, collectives: collectives) }
            how = String(format: "scored by the initial model in %.1f s", Date().timeIntervalSince(t0))
            if collectives.rank == 0 {
                do {
                    try FileManager.default.createDirectory(atPath: cacheDirectory, withIntermediateDirectories: true)
                    try write(File(key: key, sets: sets.map(\.reference)), to: cacheFile)
                    how += ", cached at \(cacheFile)"
                } catch {
                    how += " (not cached: \(error.localizedDescription))"
                }
            }
        }
        if collectives.rank == 0 { try write(File(key: key, sets: sets.map(\.reference)), to: runFile) }
        return "reference log-probs of \(sets.reduce(0) { $0 + $1.count }) pairs \(how)"
    }

    static func write(_ f: File, to path: String) throws {
        let tmp = path + ".partial"
        try JSONEncoder().encode(f).write(to: URL(fileURLWithPath: tmp))
        guard rename(tmp, path) == 0 else { throw ConfigError.invalidFile(path: path, reason: "cannot write: \(String(cString: strerror(errno)))") }
    }

    /// Σ log p of each pair's chosen and rejected completion under `model`; rank r scores chunks
    /// r, r + W, … and the ranks exchange them.
    static func score(_ set: PreferencePairs, model: LlamaModel, microBatch mb: Int, collectives: Collectives) throws -> [Double] {
        var mine: [Int: [Double]] = [:]
        for (k, start) in stride(from: 0, to: set.count, by: mb).enumerated() where k % collectives.size == collectives.rank {
            let real = min(start + mb, set.count) - start
            let b = set.batch(windows: Array(start..<start + real), paddedTo: mb)
            let losses = try model.tokenLosses(b)
            let logProbs = losses.withUnsafeBufferPointer { PreferenceBatch.logProbs($0, batch: b) }
            for r in 0..<real {
                guard let lp = logProbs[r] else { throw ConfigError.invalidValue(key: "data", reason: "preference pair \(start + r) has no completion tokens") }
                mine[start + r] = [lp.chosen, lp.rejected]
            }
        }
        var out = [Double](repeating: 0, count: 2 * set.count)
        let everyone = collectives.size > 1 ? try collectives.allGather(Array(try JSONEncoder().encode(mine))).map {
            try JSONDecoder().decode([Int: [Double]].self, from: Data($0))
        } : [mine]
        for part in everyone { for (i, v) in part { out[2 * i] = v[0]; out[2 * i + 1] = v[1] } }
        return out
    }
}
