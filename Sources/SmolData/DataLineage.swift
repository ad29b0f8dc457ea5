import Foundation

/// What `smol data dedup` removed from one of its outputs before a prepare read it: the input's
/// entry in the `dedup_report.json` beside it.
public struct DedupOrigin: Codable, Sendable, Equatable {
    public var input: String
    public var report: String
    public var documents: Int
    public var kept: Int
    public var exactDuplicates: Int
    public var nearDuplicates: Int
    public var parameters: MinHashDeduplicator.Parameters

    enum CodingKeys: String, CodingKey {
        case input, report, documents, kept, parameters, exactDuplicates = "exact_duplicates", nearDuplicates = "near_duplicates"
    }

    /// The dedup entry for a prepare input that is a dedup output (DIR/NAME.jsonl with
    /// DIR/dedup_report.json listing a source named NAME), if any.
    public static func find(forInput input: String) -> DedupOrigin? {
        let dir = (input as NSString).deletingLastPathComponent
        let report = ((dir.isEmpty ? "." : dir) as NSString).appendingPathComponent("dedup_report.json")
        struct Report: Decodable {
            struct Source: Decodable {
                var file: String, documents: Int, kept: Int, exactDuplicates: Int, nearDuplicates: Int
                enum CodingKeys: String, CodingKey { case file, documents, kept, exactDuplicates = "exact_duplicates", nearDuplicates = "near_duplicates" }
            }
            var parameters: MinHashDeduplicator.Parameters
            var sources: [Source]
        }
        guard input.hasSuffix(".jsonl"), let data = FileManager.default.contents(atPath: report),
              let r = try? JSONDecoder().decode(Report.self, from: data) else { return nil }
        let name = (input as NSString).lastPathComponent
        guard let s = r.sources.first(where: { (($0.file as NSString).lastPathComponent as NSString).deletingPathExtension + ".jsonl" == name }) else { return nil }
        return DedupOrigin(input: input, report: report, documents: s.documents, kept: s.kept, exactDuplicates: s.exactDuplicates,
                           nearDuplicates: s.nearDuplicates, parameters: r.parameters)
    }
}

/// Where a training source's data came from, as its shards' manifests say: the documents and tokens
/// prepared, the records prepare rejected (by reason), and what dedup removed before it. One entry
/// per manifest (a source's shards may come from several prepares); the run store keeps them with
/// the run, and `smol runs show` prints them.
public struct DataLineage: Codable, Sendable, Equatable {
    public var source: String
    /// The manifest, or nil for shards that have none (then only `shards` is known).
    public var manifest: String?
    public var shards: Int
    public var inputs: [String] = []
    public var tokenizer: String?
    public var documents = 0
    public var tokens = 0
    public var rejected: [String: Int] = [:]
    public var deduplicated: [DedupOrigin] = []

    /// One entry per manifest among `shards`, in order of first appearance.
    public static func of(source: String, shards: [String]) -> [DataLineage] {
        var out: [DataLineage] = []
        for shard in shards {
            let found = DataManifest.find(forShard: shard)
            if let i = out.firstIndex(where: { $0.manifest == found?.path }) { out[i].shards += 1; continue }
            var entry = DataLineage(source: source, manifest: found?.path, shards: 1)
            if let m = found?.manifest {
                entry.inputs = m.inputs ?? []; entry.tokenizer = m.tokenizer; entry.documents = m.documents ?? 0; entry.tokens = m.tokens ?? 0
                entry.rejected = m.rejected?.reasons.mapValues(\.count) ?? [:]
                entry.deduplicated = m.lineage?.deduplicated ?? []
            }
            out.append(entry)
        }
        return out
    }

    /// One line for people: where the data came from and what was taken out of it.
    public var summary: String {
        var s = "\(source): \(shards) shard(s)"
        guard let manifest else { return s + " without a manifest (lineage unknown)" }
        s += " from \(manifest): \(documents) documents, \(tokens) tokens, \(inputs.count) input(s)"
        let rejectedTotal = rejected.values.reduce(0, +)
        if rejectedTotal > 0 {
            s += "; prepare rejected \(rejectedTotal) (" + rejected.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ") + ")"
        }
        for d in deduplicated {
            s += "; dedup removed \(d.exactDuplicates) exact and \(d.nearDuplicates) near duplicate(s) of \(d.documents) from \(d.input) (\(d.report))"
        }
        return s
    }
}
