import XCTest
import SmolData
import SmolFormats
import SmolModel
@testable import SmolTrainer

final class ConfigAndFormatTests: XCTestCase {
    let base = """
    model: {vocab_size: 64, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 32}
    data: {train: [x.bin]}
    training: {seq_len: 8, micro_batch: 2, steps: 3}
    """

    func error(_ yaml: String, overrides: [String] = []) -> String {
        do { _ = try TrainConfig.parse(yaml: yaml, path: "my.yaml", overrides: overrides); return "" }
        catch { return "\(error)" }
    }

    func testValidConfigAndOverrides() throws {
        let c = try TrainConfig.parse(yaml: base, overrides: ["optimizer.lr=0.01", "training.steps=7"])
        XCTAssertEqual(c.optimizer.lr, 0.01)
        XCTAssertEqual(c.training.steps, 7)
        XCTAssertEqual(c.model.numKeyValueHeads, 2)
    }

    func testErrorsNameFileAndKey() {
        let unknown = error(base + "\noptimizer: {lr: 0.1, learning_rate: 0.1}")
        XCTAssertTrue(unknown.contains("my.yaml") && unknown.contains("optimizer.learning_rate"), unknown)
        let missing = error(base.replacingOccurrences(of: "hidden_size: 16, ", with: ""))
        XCTAssertTrue(missing.contains("hidden_size"), missing)
        let negative = error(base, overrides: ["optimizer.lr=-1"])
        XCTAssertTrue(negative.contains("optimizer.lr"), negative)
        let heads = error(base, overrides: ["model.num_attention_heads=3"])
        XCTAssertTrue(heads.contains("num_attention_heads") && heads.contains("divide"), heads)
        let kv = error(base, overrides: ["model.num_key_value_heads=3", "model.num_attention_heads=4"])
        XCTAssertTrue(kv.contains("num_key_value_heads"), kv)
        let batch = error(base, overrides: ["training.tokens_per_batch=20"])
        XCTAssertTrue(batch.contains("tokens_per_batch"), batch)
        let type = error(base, overrides: ["training.steps=many"])
        XCTAssertTrue(type.contains("training.steps"), type)
        let topUnknown = error(base + "\nmodle: {}")
        XCTAssertTrue(topUnknown.contains("'modle'"), topUnknown)
    }

    func testSafetensorsRoundTripAndMalformedFiles() throws {
        let dir = NSTemporaryDirectory() + "smol-st-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = dir + "/a.safetensors"
        var a: [Float] = [1, 2, 3, 4, 5, 6]
        try a.withUnsafeMutableBufferPointer { p in
            try SafetensorsWriter.write([.init(name: "w", shape: [2, 3], data: p.baseAddress!)], to: path)
        }
        XCTAssertEqual(try SafetensorsFile(path: path).array("w"), a)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        func expectError(_ data: Data, _ needle: String, line: UInt = #line) {
            let p = dir + "/bad.safetensors"
            try! data.write(to: URL(fileURLWithPath: p))
            XCTAssertThrowsError(try SafetensorsFile(path: p), line: line) { e in
                XCTAssertTrue("\(e)".contains(p) && "\(e)".contains(needle), "\(e)", line: line)
            }
        }
        expectError(bytes.prefix(5), "shorter")
        expectError(bytes.prefix(bytes.count - 4), "outside")              // truncated data
        expectError(Data("PK\u{3}\u{4}not a safetensors file at all".utf8), "header length")  // foreign file
        var huge = bytes; huge.replaceSubrange(0..<8, with: [0xFF, 0xFF, 0xFF, 0x0F, 0, 0, 0, 0])
        expectError(huge, "header length")
        XCTAssertThrowsError(try SafetensorsFile(path: path).read("w", shape: [3, 2], into: &a)) { e in
            XCTAssertTrue("\(e)".contains("shape"))
        }
    }

    func testShardRoundTripAndTruncation() throws {
        let dir = NSTemporaryDirectory() + "smol-shard-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = dir + "/s.bin"
        let docs: [[Int32]] = [[1, 2, 3, 256], [4, 256], [5, 6, 7, 8, 9, 256]]
        try TokenShard.write(documents: docs, vocabSize: 257, to: path)
        let s = try TokenShard(path: path)
        XCTAssertEqual(s.tokenCount, 12); XCTAssertEqual(s.documentCount, 3)
        XCTAssertEqual((0..<12).map { s.token($0) }, docs.flatMap { $0 })
        XCTAssertEqual(s.document(containing: 5), 1); XCTAssertEqual(s.document(containing: 6), 2)
        // Windows of 3: document starts inside a window are row-local.
        let ds = WindowDataset(shards: [s], seqLen: 3)
        XCTAssertEqual(ds.count, 3)
        let b = ds.batch(windows: [1])   // tokens 3..5: [256, 4, 256], targets [4, 256, 5]
        XCTAssertEqual(b.tokens, [256, 4, 256]); XCTAssertEqual(b.targets, [4, 256, 5])
        XCTAssertEqual(b.documentStart, [0, 1, 1])
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        try data.prefix(data.count - 8).write(to: URL(fileURLWithPath: dir + "/t.bin"))
        XCTAssertThrowsError(try TokenShard(path: dir + "/t.bin")) { XCTAssertTrue("\($0)".contains("truncated")) }
        XCTAssertThrowsError(try TokenShard(path: dir + "/missing.bin")) { XCTAssertTrue("\($0)".contains("missing.bin")) }
    }

    func testLoaderVisitsEveryWindowOncePerEpochAndResumesExactly() throws {
        let dir = NSTemporaryDirectory() + "smol-loader-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try TokenShard.write(documents: [(0..<101).map { Int32($0 % 250) }], vocabSize: 257, to: dir + "/l.bin")
        let ds = WindowDataset(shards: [try TokenShard(path: dir + "/l.bin")], seqLen: 10)
        XCTAssertEqual(ds.count, 10)
        let one = [MixtureStage(startTokens: 0, weights: [1])]
        let loader = MixtureLoader(sources: [ds], names: ["l"], stages: one, microBatch: 2, seed: 3)
        var firsts = Set<Int32>()
        for _ in 0..<5 { let b = loader.next(); firsts.insert(b.tokens[0]); firsts.insert(b.tokens[10]) }
        XCTAssertEqual(firsts.count, 10)
        let saved = loader.position
        let next = (0..<4).map { _ in loader.next().tokens }
        let resumed = MixtureLoader(sources: [ds], names: ["l"], stages: one, microBatch: 2, seed: 3, position: saved)
        XCTAssertEqual((0..<4).map { _ in resumed.next().tokens }, next)
    }
}
