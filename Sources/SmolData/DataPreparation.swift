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
        var pending: [RawDocument] = []
        let writer = ShardSetWriter(prefix: prefix, single: single, shardTokens: shardTokens, vocabSize: vocabSize)

        func encodePending() throws {
            guard !pending.isEmpty else { return }
            var results = [[Int32]](repeating: [], count: pending.count)
            results.withUnsafeMutableBufferPointer { out in
                let docs = pending
                Parallel.chunks(docs.count) { worker, range in
                    let encode = encoders[worker % encoders.count]
                    for i in range { out[i] = encode(docs[i].text) }
                }
            }
            for (doc, ids) in zip(pending, results) {
                let full = (bos.map { [$0] } ?? []) + ids + (eos.map { [$0] } ?? [])
                try writer.add(full)
                m.documents += 1; m.tokens += full.count; m.bytes += doc.text.utf8.count
            }
            pending.removeAll(keepingCapacity: true)
            progress(m.documents, m.bytes, m.tokens)
        }

        return try writer.write {
            for file in files {
                try reader.read(file: file, rejections: &m.rejected) { doc in
                    pending.append(doc)
                    if pending.count >= 512 * threads { try encodePending() }
                }
            }
            try encodePending()
            return m
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

    public init(prefix: String, single: Bool, shardTokens: Int, vocabSize: Int) {
        self.prefix = prefix; self.single = single; self.shardTokens = shardTokens; self.vocabSize = vocabSize
    }

    public var manifestPath: String { prefix + ".manifest.json" }

    /// Adds a document, with its loss mask for a chat shard (all documents have one, or none).
    public func add(_ document: [Int32], lossMask: [UInt8]? = nil) throws {
        if let c = current, !single, c.tokens > 0, c.tokens + document.count > shardTokens { try flush() }
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
