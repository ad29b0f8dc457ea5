import Foundation
import SmolTokenizer
import SmolTensor

/// What `smol data prepare` wrote: one source's shards and how they were made (written beside the
/// shards as NAME.manifest.json, last, so a manifest always describes complete shards).
public struct DataManifest: Encodable, Sendable {
    public struct Shard: Codable, Sendable { public let path: String; public let documents: Int; public let tokens: Int }
    public var format = "smol-shards/1"
    public var source: String
    public var inputs: [String]
    public var tokenizer: String
    /// The tokenizer's fingerprint, `tokenizerHash(of:)` ("byte-level" for the built-in byte
    /// tokenizer). Manifests written before version 0.9 hold FNV-1a 64 of the tokenizer file's bytes.
    public var tokenizerHash: String
    public var vocabSize: Int
    public var documents = 0
    public var tokens = 0
    public var bytes = 0
    public var bytesPerToken: Double { tokens > 0 ? Double(bytes) / Double(tokens) : 0 }
    public var bos: Int32?
    public var eos: Int32?
    public var shards: [Shard] = []
    public var rejected = Rejections()
    /// Chat shards only: roles, guard, packing (`ChatPreparation`).
    public var chat: ChatDataReport?

    enum CodingKeys: String, CodingKey {
        case format, source, inputs, tokenizer, tokenizerHash = "tokenizer_hash", vocabSize = "vocab_size", documents, tokens, bytes
        case bytesPerToken = "bytes_per_token", bos, eos, shards, rejected, chat
    }
    public init(source: String, inputs: [String], tokenizer: String, tokenizerHash: String, vocabSize: Int) {
        self.source = source; self.inputs = inputs; self.tokenizer = tokenizer; self.tokenizerHash = tokenizerHash; self.vocabSize = vocabSize
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(format, forKey: .format); try c.encode(source, forKey: .source); try c.encode(inputs, forKey: .inputs)
        try c.encode(tokenizer, forKey: .tokenizer); try c.encode(tokenizerHash, forKey: .tokenizerHash); try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(documents, forKey: .documents); try c.encode(tokens, forKey: .tokens); try c.encode(bytes, forKey: .bytes)
        try c.encode((bytesPerToken * 1000).rounded() / 1000, forKey: .bytesPerToken)
        try c.encodeIfPresent(bos, forKey: .bos); try c.encodeIfPresent(eos, forKey: .eos)
        try c.encode(shards, forKey: .shards); try c.encode(rejected, forKey: .rejected)
        try c.encodeIfPresent(chat, forKey: .chat)
    }

    /// FNV-1a 64 of the tokenizer as Hugging Face tokenizer.json (our canonical, key-sorted
    /// serialisation): the same for a tokenizer.json and a GGUF holding the same tokenizer.
    public static func tokenizerHash(of t: BPETokenizer) throws -> String { fnv1a64(try t.tokenizerJSON()) }

    /// What a manifest says of the tokenizer its shards were made with.
    public struct TokenizerOrigin: Decodable {
        public let tokenizer: String
        public let tokenizerHash: String
        let shards: [Shard]
        public let chat: ChatDataReport?
        enum CodingKeys: String, CodingKey { case tokenizer, tokenizerHash = "tokenizer_hash", shards, chat }
    }

    /// The manifest that lists `shard` (NAME.manifest.json files in the shard's directory), if any.
    public static func find(forShard shard: String) -> (path: String, manifest: TokenizerOrigin)? {
        let dir = (shard as NSString).deletingLastPathComponent, name = (shard as NSString).lastPathComponent
        let listDir = dir.isEmpty ? "." : dir
        for file in ((try? FileManager.default.contentsOfDirectory(atPath: listDir)) ?? []).sorted() where file.hasSuffix(".manifest.json") {
            let path = (listDir as NSString).appendingPathComponent(file)
            guard let data = FileManager.default.contents(atPath: path),
                  let m = try? JSONDecoder().decode(TokenizerOrigin.self, from: data) else { continue }
            if m.shards.contains(where: { $0.path == name }) { return (path, m) }
        }
        return nil
    }

    public static func fnv1a64(_ data: Data) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in data { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return String(format: "%016llx", h)
    }
}

/// Tokenises a corpus in parallel and writes it as shards of at most `shardTokens` tokens.
/// Documents keep their input order whatever the thread count, so the output is reproducible.
/// Shards are written under temporary names and renamed once all are complete; the manifest comes last.
public struct DataPreparation {
    public var reader = CorpusReader()
    public var shardTokens = 50_000_000
    public var bos: Int32?
    public var eos: Int32?
    public var vocabSize: Int
    /// One encoder per worker thread (each may keep its own caches).
    public var makeEncoder: () -> (String) -> [Int32]
    public var progress: (_ documents: Int, _ bytes: Int, _ tokens: Int) -> Void = { _, _, _ in }
    /// Continue a killed prepare from its last complete shard (`PREFIX.resume.json`).
    public var resume = false

    public init(vocabSize: Int, makeEncoder: @escaping () -> (String) -> [Int32]) {
        self.vocabSize = vocabSize; self.makeEncoder = makeEncoder
    }

    /// Writes `prefix`-00000.bin, … (or exactly `prefix`.bin when `single`), and returns the manifest
    /// (also written to `prefix`.manifest.json).
    public func run(files: [String], prefix: String, single: Bool, manifest: DataManifest) throws -> DataManifest {
        var m = manifest
        m.bos = bos; m.eos = eos
        let threads = max(1, Parallel.threads)
        let encoders = (0..<threads).map { _ in makeEncoder() }
        var pending: [(record: CorpusReader.RawRecord, file: Int, index: Int)] = [], pendingBytes = 0
        let writer = ShardSetWriter(prefix: prefix, single: single, shardTokens: shardTokens, vocabSize: vocabSize)
        let reader = self.reader

        // Each time a shard is complete, where the next document comes from and the counts before it.
        var point = PrepareResumePoint(inputs: files, tokenizerHash: m.tokenizerHash, shardTokens: shardTokens, bos: bos, eos: eos,
                                       textField: reader.textField, minBytes: reader.minBytes)
        let resumePath = prefix + ".resume.json"
        var skip = (file: 0, record: 0)
        if resume {
            let saved = try PrepareResumePoint.read(resumePath)
            guard saved.sameRun(as: point) else {
                throw CorpusError(message: "\(resumePath): written by a prepare of other inputs or options; start over with --force")
            }
            try writer.resume(from: saved.shards)
            (m.documents, m.tokens, m.bytes, m.rejected) = (saved.documents, saved.tokens, saved.bytes, saved.rejected)
            skip = (saved.file, saved.record)
        }
        writer.onShardComplete = { shards in
            point.shards = shards
            point.documents = m.documents; point.tokens = m.tokens; point.bytes = m.bytes; point.rejected = m.rejected
            try point.write(resumePath)
        }

        // A batch of records is parsed (UTF-8, JSON), checked and encoded on every core; its
        // documents are then written, and its rejections counted, in input order.
        func processPending() throws {
            guard !pending.isEmpty else { return }
            var results = [Result<(ids: [Int32], bytes: Int), CorpusError>?](repeating: nil, count: pending.count)
            results.withUnsafeMutableBufferPointer { out in
                let batch = pending
                Parallel.chunks(batch.count) { worker, range in
                    let encode = encoders[worker % encoders.count]
                    for i in range { out[i] = reader.document(batch[i].record).map { (encode($0), $0.utf8.count) } }
                }
            }
            for (item, result) in zip(pending, results) {
                switch result! {
                case let .failure(e):
                    let location = "\(files[item.file]):\(item.record.line)"
                    if reader.strict { throw CorpusError(message: "\(location): \(e.message)") }
                    m.rejected.add(e.message, at: location)
                case let .success((ids, bytes)):
                    let full = (bos.map { [$0] } ?? []) + ids + (eos.map { [$0] } ?? [])
                    (point.file, point.record) = (item.file, item.index)
                    try writer.add(full)
                    m.documents += 1; m.tokens += full.count; m.bytes += bytes
                }
            }
            pending.removeAll(keepingCapacity: true); pendingBytes = 0
            progress(m.documents, m.bytes, m.tokens)
        }

        do {
            let done = try writer.write {
                for (k, file) in files.enumerated() where k >= skip.file {
                    var index = 0
                    try reader.records(file: file) { r in
                        defer { index += 1 }
                        if k == skip.file && index < skip.record { return }
                        pending.append((r, k, index)); pendingBytes += r.bytes.count
                        if pending.count >= 512 * threads || pendingBytes >= 16 << 20 { try processPending() }
                    }
                }
                try processPending()
                return m
            }
            unlink(resumePath)
            return done
        } catch {
            unlink(resumePath)
            throw error
        }
    }
}

/// Shards of at most `shardTokens` tokens (or exactly one, `prefix`.bin, when `single`), streamed to
/// disk as documents arrive (memory: one shard's document starts). They stay ".partial" until the
/// whole set is written, so a killed prepare leaves nothing that a "*.bin" glob would pick up as a
/// complete dataset; the manifest comes last.
public final class ShardSetWriter {
    let prefix: String, single: Bool, shardTokens: Int, vocabSize: Int
    private var current: ShardStreamWriter?
    private var written: [String] = []
    private var shards: [DataManifest.Shard] = []
    /// Called with the complete shards each time one is closed and another begins.
    public var onShardComplete: (([DataManifest.Shard]) throws -> Void)?

    public init(prefix: String, single: Bool, shardTokens: Int, vocabSize: Int) {
        self.prefix = prefix; self.single = single; self.shardTokens = shardTokens; self.vocabSize = vocabSize
    }

    public var manifestPath: String { prefix + ".manifest.json" }

    /// Adds a document, with its loss mask for a chat shard (all documents have one, or none).
    public func add(_ document: [Int32], lossMask: [UInt8]? = nil) throws {
        if let c = current, !single, c.tokens > 0, c.tokens + document.count > shardTokens {
            try flush()
            try onShardComplete?(shards)
        }
        if current == nil {
            let path = single ? prefix + ".bin" : prefix + String(format: "-%05d.bin", shards.count)
            written.append(path)
            current = try ShardStreamWriter(path: path + ".partial", vocabSize: vocabSize, masked: lossMask != nil)
        }
        try current!.add(document, lossMask: lossMask)
    }

    private func flush() throws {
        guard let c = current else { return }
        try c.close()
        current = nil
        shards.append(.init(path: (written.last! as NSString).lastPathComponent, documents: c.documents, tokens: c.tokens))
    }

    /// Takes up a killed prepare's complete shards (still ".partial"): they are kept and counted, and
    /// the next shard follows them.
    func resume(from complete: [DataManifest.Shard]) throws {
        for (i, shard) in complete.enumerated() {
            let path = prefix + String(format: "-%05d.bin", i)
            guard !single, (path as NSString).lastPathComponent == shard.path,
                  let size = (try? FileManager.default.attributesOfItem(atPath: path + ".partial"))?[.size] as? Int, size > 64 else {
                throw CorpusError(message: "\(path).partial: a shard the resume point lists is missing; start over with --force")
            }
            written.append(path)
        }
        shards = complete
    }

    /// Runs `body` (which adds the documents), then writes the last shard, renames every shard into
    /// place and writes the manifest `body` returns, with the shards listed. On any error nothing
    /// written stays behind.
    public func write(_ body: () throws -> DataManifest) throws -> DataManifest {
        do {
            var m = try body()
            m.shards = try finish()
            try writeManifest(m)
            return m
        } catch {
            removeWritten()
            throw error
        }
    }

    /// Writes the last shard and renames every shard into place; returns them for the manifest.
    func finish() throws -> [DataManifest.Shard] {
        try flush()
        for path in written where rename(path + ".partial", path) != 0 {
            throw CorpusError(message: "\(path): cannot rename the finished shard into place")
        }
        return shards
    }

    func writeManifest<M: Encodable>(_ m: M) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        let tmp = manifestPath + ".tmp"
        guard FileManager.default.createFile(atPath: tmp, contents: try enc.encode(m)), rename(tmp, manifestPath) == 0 else {
            throw CorpusError(message: "\(manifestPath): cannot write manifest")
        }
    }

    /// Removes every shard written so far (after a failure).
    func removeWritten() {
        current = nil
        for p in written { unlink(p + ".partial"); unlink(p + ".partial.mask"); unlink(p) }
    }
}

/// `PREFIX.resume.json`: what a killed prepare had finished (its complete shards, still ".partial"),
/// where the next document comes from (file index, record index in that file), the counts before
/// it, and the options that make the output, which a resume must share.
struct PrepareResumePoint: Codable {
    var inputs: [String]
    var tokenizerHash: String
    var shardTokens: Int
    var bos: Int32?, eos: Int32?
    var textField: String
    var minBytes: Int
    var shards: [DataManifest.Shard] = []
    var file = 0, record = 0
    var documents = 0, tokens = 0, bytes = 0
    var rejected = Rejections()

    init(inputs: [String], tokenizerHash: String, shardTokens: Int, bos: Int32?, eos: Int32?, textField: String, minBytes: Int) {
        self.inputs = inputs; self.tokenizerHash = tokenizerHash; self.shardTokens = shardTokens
        self.bos = bos; self.eos = eos; self.textField = textField; self.minBytes = minBytes
    }

    func sameRun(as other: PrepareResumePoint) -> Bool {
        inputs == other.inputs && tokenizerHash == other.tokenizerHash && shardTokens == other.shardTokens && bos == other.bos
            && eos == other.eos && textField == other.textField && minBytes == other.minBytes
    }

    static func read(_ path: String) throws -> PrepareResumePoint {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CorpusError(message: "\(path): no resume point (the prepare finished, never completed a shard, or ran without shards of a set size)")
        }
        do { return try JSONDecoder().decode(PrepareResumePoint.self, from: data) }
        catch { throw CorpusError(message: "\(path): not a resume point (\(error))") }
    }

    func write(_ path: String) throws {
        let tmp = path + ".tmp"
        guard FileManager.default.createFile(atPath: tmp, contents: try JSONEncoder().encode(self)), rename(tmp, path) == 0 else {
            throw CorpusError(message: "\(path): cannot write the resume point")
        }
    }
}
