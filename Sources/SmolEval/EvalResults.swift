import Crypto
import Foundation
import SmolWeights
import SmolAPI
import SmolHub
import SmolTrainer
import SmolTensor

/// The results file of one `smol eval` run (results.json), laid out as lighteval / lm-eval users
/// expect: per task each metric and its `_stderr`, the configuration, versions and hashes of the
/// items and prompts. Per-item details go to details/TASK.jsonl beside it.
public struct EvalResults: Codable, Sendable {
    public struct ModelInfo: Codable, Sendable {
        public var name: String
        public var source: String
        public var format: String
        public var parameters: Int
        public var sha256: String
    }
    public struct Config: Codable, Sendable {
        public var batchSize: Int
        public var contextLength: Int
        public var limit: Int?
        public var seed: UInt64
        public var bootstrapResamples: Int
        /// The GEMMs' input format the scores were computed in (absent in files from before it was
        /// recorded: those are fp32).
        public var precision: MatmulPrecision?
        enum CodingKeys: String, CodingKey {
            case batchSize = "batch_size", contextLength = "context_length", limit, seed, bootstrapResamples = "bootstrap_resamples",
                 precision
        }
    }

    public var formatVersion = 1
    public var created: String
    public var model: ModelInfo
    public var config: Config
    public var versions: [String: String]
    /// task → metric → value, and metric_stderr → its standard error.
    public var results: [String: [String: Double]]
    public var tasks: [String: TaskResult]
    /// The model's recorded lineage when it is a smol run: its provenance, and per task what in it
    /// touches the task (Provenance.flags; an empty list: nothing recorded does).
    public var lineage: Lineage?
    public struct Lineage: Codable, Sendable {
        public var provenance: Provenance
        public var flags: [String: [String]]
    }

    enum CodingKeys: String, CodingKey { case formatVersion = "format_version", created, model, config, versions, results, tasks, lineage }

    public static let toolVersion = "smol 0.5"

    public init(model: PretrainedModel, options: EvalOptions, contextLength: Int, tasks: [TaskResult]) throws {
        created = ISO8601DateFormatter().string(from: Date())
        var name = ((model.source as NSString).lastPathComponent as NSString).deletingPathExtension
        // A run's checkpoint (RUN/checkpoints/step_N) is named after its run.
        let parent = (model.source as NSString).deletingLastPathComponent
        if (parent as NSString).lastPathComponent == "checkpoints" {
            name = ((parent as NSString).deletingLastPathComponent as NSString).lastPathComponent + "@" + name.replacingOccurrences(of: "step_", with: "")
        }
        self.model = ModelInfo(name: name, source: model.source, format: model.format.rawValue,
                               parameters: model.model.parameters.count, sha256: try EvalResults.hashModel(model.source))
        config = Config(batchSize: options.batchSize, contextLength: contextLength, limit: options.limit, seed: options.seed,
                        bootstrapResamples: options.bootstrapResamples, precision: MatmulPrecision.resolve(options.precision).precision)
        versions = ["smol": EvalResults.toolVersion]
        results = [:]
        self.tasks = [:]
        if let p = try Provenance.lineage(ofModel: model.source) {
            lineage = Lineage(provenance: p, flags: Dictionary(uniqueKeysWithValues: tasks.map { ($0.task, p.flags(task: $0.task, itemsSha256: $0.itemsHash)) }))
        }
        for t in tasks {
            versions["task:" + t.task] = String(t.version)
            var r: [String: Double] = [:]
            for (m, v) in t.metrics { r[m] = v.value; r[m + "_stderr"] = v.stderr }
            results[t.task] = r
            self.tasks[t.task] = t
        }
    }

    /// SHA-256 of a model file, or of a directory's config.json and weight files.
    static func hashModel(_ path: String) throws -> String {
        var isDir: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: path, isDirectory: &isDir)
        var h = SHA256()
        var files = [path]
        if isDir.boolValue {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
            files = names.filter { $0 == "config.json" || $0.hasSuffix(".safetensors") }.sorted().map { (path as NSString).appendingPathComponent($0) }
        }
        for f in files {
            guard let handle = FileHandle(forReadingAtPath: f) else { continue }
            defer { try? handle.close() }
            while let chunk = try handle.read(upToCount: 1 << 24), !chunk.isEmpty { h.update(data: chunk) }
        }
        return hexString(h.finalize())
    }

    /// One compact JSON object per line (details, judgements, answers).
    public static func jsonLines<T: Encodable>(_ rows: [T]) throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        var data = Data()
        for r in rows { data.append(try e.encode(r)); data.append(0x0A) }
        return data
    }

    public static func encoder() -> JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return e
    }

    /// Writes results.json and details/TASK.jsonl under `dir`, each through a temporary file renamed
    /// into place, so an interrupted run never leaves a half-written file under the final name.
    /// `resultsData` replaces this file's own JSON (another layout, such as lm-eval's).
    public func write(to dir: String, details: [String: [ItemDetail]], resultsData: Data? = nil) throws {
        let fm = FileManager.default
        let detailDir = (dir as NSString).appendingPathComponent("details")
        try fm.createDirectory(atPath: detailDir, withIntermediateDirectories: true)
        for (task, rows) in details {
            try atomicWrite(try EvalResults.jsonLines(rows), to: (detailDir as NSString).appendingPathComponent(task + ".jsonl"))
        }
        try atomicWrite(try resultsData ?? EvalResults.encoder().encode(self), to: (dir as NSString).appendingPathComponent("results.json"))
    }

    /// Reads a results.json (or the results.json inside a directory).
    public static func load(_ path: String) throws -> (results: EvalResults, path: String) {
        var isDir: ObjCBool = false
        var file = path
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue {
            file = (path as NSString).appendingPathComponent("results.json")
        }
        guard let data = FileManager.default.contents(atPath: file) else { throw EvalError("\(file): cannot read results") }
        let d = JSONDecoder()
        d.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        do { return (try d.decode(EvalResults.self, from: data), file) } catch let e as DecodingError {
            throw EvalError("\(file): not a smol results file: \(describeDecodingError(e))")
        }
    }

    /// Per-item details of `task` written beside the results file, keyed by item line.
    public static func loadDetails(resultsFile: String, task: String) throws -> [Int: ItemDetail] {
        let path = (((resultsFile as NSString).deletingLastPathComponent as NSString).appendingPathComponent("details") as NSString)
            .appendingPathComponent(task + ".jsonl")
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw EvalError("\(path): cannot read details") }
        let d = JSONDecoder()
        d.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        var out: [Int: ItemDetail] = [:]
        for (i, line) in text.split(separator: "\n").enumerated() {
            do { let r = try d.decode(ItemDetail.self, from: Data(line.utf8)); out[r.line] = r }
            catch { throw EvalError("\(path):\(i + 1): malformed detail record") }
        }
        return out
    }
}

func atomicWrite(_ data: Data, to path: String) throws {
    let tmp = path + ".tmp-\(getpid())"
    guard FileManager.default.createFile(atPath: tmp, contents: data) else { throw EvalError("\(tmp): cannot write") }
    if rename(tmp, path) != 0 {
        unlink(tmp)
        throw EvalError("\(path): cannot move the new file into place (errno \(errno))")
    }
}
