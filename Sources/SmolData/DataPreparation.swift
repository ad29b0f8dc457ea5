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
    /// tokenizer). Older manifests hold `legacyTokenizerHash(of:)`, and those written before
    /// version 0.9 FNV-1a 64 of the tokenizer file's bytes; the trainer accepts all three.
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
    /// What happened to the inputs before this prepare (dedup), when known.
    public var lineage: Lineage?

    public struct Lineage: Codable, Sendable, Equatable {
        public var deduplicated: [DedupOrigin]
        /// The dedup entries of `inputs` that are `smol data dedup` outputs; nil when none is.
        public static func of(inputs: [String]) -> Lineage? {
            let found = inputs.compactMap(DedupOrigin.find(forInput:))
            return found.isEmpty ? nil : Lineage(deduplicated: found)
        }
    }

    enum CodingKeys: String, CodingKey {
        case format, source, inputs, tokenizer, tokenizerHash = "tokenizer_hash", vocabSize = "vocab_size", documents, tokens, bytes
        case bytesPerToken = "bytes_per_token", bos, eos, shards, rejected, chat, lineage
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
        try c.encodeIfPresent(lineage, forKey: .lineage)
    }

    /// FNV-1a 64 of the tokenizer's canonical bytes (`BPETokenizer.canonicalBytes`): the same for a
    /// tokenizer.json and a GGUF holding the same tokenizer; milliseconds.
    public static func tokenizerHash(of t: BPETokenizer) throws -> String { fnv1a64(try t.canonicalBytes()) }

    /// The fingerprint manifests held until 2026-12: FNV-1a 64 of the key-sorted tokenizer.json,
    /// whose vocabulary sort through ICU collation takes about 2.4 s for a 49k vocabulary.
    public static func legacyTokenizerHash(of t: BPETokenizer) throws -> String { fnv1a64(try t.tokenizerJSON()) }

    /// What a manifest says of where its shards came from: the tokenizer they were made with, the
    /// chat report, and the lineage a run records (counts, rejections, dedup; absent from manifests
    /// written before they were recorded).
    public struct Origin: Decodable {
        public let tokenizer: String
        public let tokenizerHash: String
        let shards: [Shard]
        public let chat: ChatDataReport?
        public let inputs: [String]?
        public let documents: Int?
        public let tokens: Int?
        public let rejected: Rejections?
        public let lineage: Lineage?
        enum CodingKeys: String, CodingKey {
            case tokenizer, tokenizerHash = "tokenizer_hash", shards, chat, inputs, documents, tokens, rejected, lineage
        }
    }

    /// The manifest that lists `shard` (NAME.manifest.json files in the shard's directory), if any.
    public static func find(forShard shard: String) -> (path: String, manifest: Origin)? {
        let dir = (shard as NSString).deletingLastPathComponent, name = (shard as NSString).lastPathComponent
        let listDir = dir.isEmpty ? "." : dir
        for file in ((try? FileManager.default.contentsOfDirectory(atPath: listDir)) ?? []).sorted() where file.hasSuffix(".manifest.json") {
            let path = (listDir as NSString).appendingPathComponent(file)
            guard let data = FileManager.default.contents(atPath: path),
                  let m = try? JSONDecoder().decode(Origin.self, from: data) else { continue }
            if m.shards.contains(where: { $0.path == name }) { return (path, m) }
        }
        return nil
    }

    public static func fnv1a64(_ data: Data) -> String {
        var h = FNV1a64()
        h.add(data)
        return h.hex
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
    /// (also written to `prefix`.manifest.json). With more than one rank in `world` (mpirun), the
    /// input is split between the ranks (`InputSplit`) and rank 0 writes the output, identical to one
    /// process's; every rank returns the manifest.
    public func run(files: [String], prefix: String, single: Bool, manifest: DataManifest,
                    world: Collectives = SingleProcess()) throws -> DataManifest {
        if world.size > 1 { return try runSpread(files: files, prefix: prefix, single: single, manifest: manifest, world: world) }
        var m = manifest
        m.bos = bos; m.eos = eos
        let writer = ShardSetWriter(prefix: prefix, single: single, shardTokens: shardTokens, vocabSize: vocabSize)

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
        let pieces = files.indices.filter { $0 >= skip.file }.map { InputPiece(file: $0, range: nil) }
        do {
            let done = try writer.write {
                try encode(pieces, files: files, skipping: skip) { event in
                    switch event {
                    case let .rejected(reason, piece, line):
                        let location = "\(files[pieces[piece].file]):\(line)"
                        if reader.strict { throw CorpusError(message: "\(location): \(reason)") }
                        m.rejected.add(reason, at: location)
                    case let .document(ids, bytes, piece, record):
                        (point.file, point.record) = (pieces[piece].file, record)
                        try writer.add(ids)
                        m.documents += 1; m.tokens += ids.count; m.bytes += bytes
                        progress(m.documents, m.bytes, m.tokens)
                    }
                }
                return m
            }
            unlink(resumePath)
            return done
        } catch {
            unlink(resumePath)
            throw error
        }
    }

    /// What the encoding of a piece's records yields, in input order.
    enum Encoded {
        case document(ids: [Int32], bytes: Int, piece: Int, record: Int)
        case rejected(reason: String, piece: Int, line: Int)
    }

    /// Reads `pieces` in order and parses (UTF-8, JSON), checks and encodes their records on every
    /// core, a batch at a time; `emit` gets each document (BOS and EOS added) or rejection in input
    /// order. Records before `skipping` (a file index and a record index in it) are passed over.
    /// Lines are counted from 1 in each piece. Returns the newline bytes read in each piece that is
    /// a byte range.
    @discardableResult
    func encode(_ pieces: [InputPiece], files: [String], skipping skip: (file: Int, record: Int) = (0, 0),
                emit: (Encoded) throws -> Void) throws -> [Int] {
        let threads = max(1, Parallel.threads)
        let encoders = (0..<threads).map { _ in makeEncoder() }
        let reader = self.reader
        var pending: [(record: CorpusReader.RawRecord, piece: Int, index: Int)] = [], pendingBytes = 0
        func processPending() throws {
            guard !pending.isEmpty else { return }
            var results = [Result<(ids: [Int32], bytes: Int), CorpusError>?](repeating: nil, count: pending.count)
            results.withUnsafeMutableBufferPointer { out in
                let batch = pending, n = batch.count
                // Documents differ in length: each worker (with its own encoder, whose word cache
                // stays warm in its core) takes the next of many small slices as it comes free, so
                // every core is busy to the end of the batch.
                let slices = SliceCounter(count: threads == 1 ? 1 : min(n, threads * 16))
                Parallel.chunks(threads) { worker, _ in
                    let encode = encoders[worker]
                    while let k = slices.next() {
                        for i in (n * k / slices.count)..<(n * (k + 1) / slices.count) {
                            out[i] = reader.document(batch[i].record).map { (encode($0), $0.utf8.count) }
                        }
                    }
                }
            }
            for (item, result) in zip(pending, results) {
                switch result! {
                case let .failure(e): try emit(.rejected(reason: e.message, piece: item.piece, line: item.record.line))
                case let .success((ids, bytes)):
                    let full = (bos.map { [$0] } ?? []) + ids + (eos.map { [$0] } ?? [])
                    try emit(.document(ids: full, bytes: bytes, piece: item.piece, record: item.index))
                }
            }
            pending.removeAll(keepingCapacity: true); pendingBytes = 0
        }
        var newlines: [Int] = []
        for (k, piece) in pieces.enumerated() {
            var index = 0
            let skipHere = piece.file == skip.file ? skip.record : 0
            newlines.append(try reader.records(file: files[piece.file], range: piece.range) { r in
                defer { index += 1 }
                if index < skipHere { return }
                pending.append((r, k, index)); pendingBytes += r.bytes.count
                if pending.count >= 512 * threads || pendingBytes >= 16 << 20 { try processPending() }
            })
        }
        try processPending()
        return newlines
    }

    /// One rank's part of a multi-process prepare: its pieces' documents go to a spool (a shard of
    /// its own), its rejections are kept with piece-relative lines. The ranks then exchange counts,
    /// newline counts (to place every line) and rejections; rank 0 copies the spools, in rank order,
    /// into the shards and writes the manifest.
    func runSpread(files: [String], prefix: String, single: Bool, manifest: DataManifest, world: Collectives) throws -> DataManifest {
        if resume { throw CorpusError(message: "--resume continues a prepare run by one process; this one has \(world.size) ranks") }
        let all = try InputSplit.pieces(files: files, split: reader.textSplit, ranks: world.size)
        let mine = all[world.rank]
        let spoolPath = prefix + ".rank\(world.rank).spool"
        defer { unlink(spoolPath) }
        var part = RankPart()
        do {
            let spool = try ShardStreamWriter(path: spoolPath, vocabSize: vocabSize, masked: false)
            part.newlines = try encode(mine, files: files) { event in
                switch event {
                case let .rejected(reason, piece, line):
                    if part.rejected.filter({ $0.reason == reason }).count < 5 {
                        part.rejected.append(.init(reason: reason, piece: piece, line: line))
                    }
                    part.rejectedCounts[reason, default: 0] += 1
                    if reader.strict { throw RankPart.Stop() }
                case let .document(ids, bytes, _, _):
                    try spool.add(ids)
                    part.documents += 1; part.tokens += ids.count; part.bytes += bytes
                }
            }
            try spool.close()
        } catch is RankPart.Stop {
        } catch { part.failure = "\(error)" }
        let parts = try world.allGather(Array(try JSONEncoder().encode(part))).map { try JSONDecoder().decode(RankPart.self, from: Data($0)) }

        // Every piece's first line: 1 plus the newlines of the pieces of its file before it.
        var firstLine: [[Int]] = [], linesSoFar: [Int: Int] = [:]
        for (r, pieces) in all.enumerated() {
            firstLine.append(pieces.enumerated().map { k, p in
                let line = 1 + (p.range == nil ? 0 : linesSoFar[p.file, default: 0])
                linesSoFar[p.file, default: 0] += parts[r].newlines.indices.contains(k) ? parts[r].newlines[k] : 0
                return line
            })
        }
        var m = manifest
        m.bos = bos; m.eos = eos
        for (r, p) in parts.enumerated() {
            func location(_ x: RankPart.Rejection) -> String { "\(files[all[r][x.piece].file]):\(firstLine[r][x.piece] + x.line - 1)" }
            if reader.strict, let x = p.rejected.first { throw CorpusError(message: "\(location(x)): \(x.reason)") }
            if let failure = p.failure { throw CorpusError(message: "rank \(r): \(failure)") }
            var rejected = Rejections()
            for x in p.rejected { rejected.add(x.reason, at: location(x)) }
            for (reason, count) in p.rejectedCounts { rejected.addUncounted(reason, count: count) }
            m.rejected.merge(rejected)
            m.documents += p.documents; m.tokens += p.tokens; m.bytes += p.bytes
        }
        var failure = ""
        if world.rank == 0 {
            let writer = ShardSetWriter(prefix: prefix, single: single, shardTokens: shardTokens, vocabSize: vocabSize)
            do {
                m = try writer.write {
                    for r in 0..<world.size {
                        let spool = try TokenShard(path: prefix + ".rank\(r).spool")
                        for d in 0..<spool.documentCount {
                            try writer.add((spool.documentStart(d)..<spool.documentStart(d + 1)).map(spool.token))
                        }
                    }
                    return m
                }
            } catch { failure = "\(error)" }
        }
        // Rank 0's outcome, to every rank; the spools stay until it has copied them.
        let outcome = String(decoding: try world.allGather(Array(failure.utf8))[0], as: UTF8.self)
        if !outcome.isEmpty { throw CorpusError(message: outcome) }
        return m
    }
}

/// Hands out 0, 1, …, count − 1 once each, to whichever thread asks first.
final class SliceCounter: @unchecked Sendable {
    let count: Int
    private var taken = 0
    private let lock = NSLock()
    init(count: Int) { self.count = count }
    func next() -> Int? {
        lock.lock(); defer { lock.unlock() }
        guard taken < count else { return nil }
        taken += 1
        return taken - 1
    }
}

/// What one rank of a multi-process prepare did, sent to the others.
struct RankPart: Codable {
    struct Rejection: Codable { var reason: String; var piece: Int; var line: Int }
    struct Stop: Error {}
    var documents = 0, tokens = 0, bytes = 0
    /// Newline bytes in each of the rank's pieces that is a byte range (0 for whole files).
    var newlines: [Int] = []
    /// The first five rejections of each reason, with piece-relative lines, and the counts.
    var rejected: [Rejection] = []
    var rejectedCounts: [String: Int] = [:]
    var failure: String?
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
