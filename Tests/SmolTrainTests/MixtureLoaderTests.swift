import XCTest
import SmolData
import SmolModel
@testable import SmolTrainer

/// The mixture loader against hand-computable facts: binomial tolerances on source proportions,
/// stage switches at their token counts, exact resume, and disjoint, complete rank shards.
final class MixtureLoaderTests: XCTestCase {
    var dir: String!

    override func setUp() {
        dir = NSTemporaryDirectory() + "mixture-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// A source whose every token is `marker` (so a window's source is visible in the batch) and whose
    /// documents are `docs` documents of `length` tokens.
    func source(_ marker: Int32, docs: Int, length: Int, seqLen: Int) throws -> WindowDataset {
        let path = dir + "/s\(marker).bin"
        let documents = (0..<docs).map { d in (0..<length).map { i in i == length - 1 ? Int32(0) : marker * 1000 + Int32(d % 1000) } }
        try TokenShard.write(documents: documents, vocabSize: 65_536, to: path)
        return WindowDataset(shards: [try TokenShard(path: path)], seqLen: seqLen)
    }

    func sourcesOf(_ b: TokenBatch) -> [Int] { (0..<b.batch).map { Int(b.tokens[$0 * b.seqLen] / 1000) } }

    func testProportionsFollowTheWeightsWithinBinomialTolerance() throws {
        let T = 8
        let sets = [try source(1, docs: 200, length: 40, seqLen: T), try source(2, docs: 200, length: 40, seqLen: T), try source(3, docs: 200, length: 40, seqLen: T)]
        let loader = MixtureLoader(sources: sets, names: ["web", "code", "math"],
                                   stages: [MixtureStage(startTokens: 0, weights: [85, 12, 3])], microBatch: 16, seed: 7)
        var counts = [0, 0, 0, 0]
        let n = 16 * 1000
        for _ in 0..<(n / 16) { for s in sourcesOf(loader.next()) { counts[s] += 1 } }
        for (s, p) in [(1, 0.85), (2, 0.12), (3, 0.03)] {
            let sigma = (Double(n) * p * (1 - p)).squareRoot()
            XCTAssertLessThan(abs(Double(counts[s]) - Double(n) * p), 4 * sigma, "source \(s): \(counts[s]) of \(n)")
        }
        XCTAssertEqual(loader.accounting.map(\.tokens).reduce(0, +), n * T)
    }

    func testStagesSwitchAtTheirTokenCounts() throws {
        let T = 8, mb = 4
        let sets = [try source(1, docs: 100, length: 40, seqLen: T), try source(2, docs: 100, length: 40, seqLen: T)]
        // Source 1 only until 800 tokens (100 sequences), then source 2 only: an exact boundary.
        let loader = MixtureLoader(sources: sets, names: ["a", "b"],
                                   stages: [MixtureStage(startTokens: 0, weights: [1, 0]), MixtureStage(startTokens: 800, weights: [0, 1])],
                                   microBatch: mb, seed: 3)
        var seen: [Int] = []
        for _ in 0..<50 { seen += sourcesOf(loader.next()) }
        XCTAssertEqual(Array(seen[..<100]), Array(repeating: 1, count: 100))
        XCTAssertEqual(Array(seen[100...]), Array(repeating: 2, count: 100))
        XCTAssertEqual(loader.stage(atTokens: 799).weights, [1, 0])
        XCTAssertEqual(loader.stage(atTokens: 800).weights, [0, 1])
    }

    func testResumeFromAPositionContinuesExactly() throws {
        let T = 8
        let sets = [try source(1, docs: 30, length: 20, seqLen: T), try source(2, docs: 30, length: 20, seqLen: T)]
        let stages = [MixtureStage(startTokens: 0, weights: [0.6, 0.4])]
        let a = MixtureLoader(sources: sets, names: ["a", "b"], stages: stages, microBatch: 4, seed: 11)
        for _ in 0..<37 { _ = a.next() }                        // past an epoch boundary of both sources
        let saved = try JSONDecoder().decode(DataPosition.self, from: JSONEncoder().encode(a.position))
        let b = MixtureLoader(sources: sets, names: ["a", "b"], stages: stages, microBatch: 4, seed: 11, position: saved)
        XCTAssertGreaterThan(saved.sources[0].epoch, 0)
        for _ in 0..<40 {
            let x = a.next(), y = b.next()
            XCTAssertEqual(x.tokens, y.tokens); XCTAssertEqual(x.targets, y.targets); XCTAssertEqual(x.documentStart, y.documentStart)
        }
    }

    func testRankShardsAreDisjointAndCoverTheEpoch() throws {
        // Token i at position i, so a window's first token / T is its index.
        let T = 4, path = dir + "/ranked.bin"
        try TokenShard.write(documents: [(0..<450).map { Int32($0) }], vocabSize: 65_536, to: path)
        let set = WindowDataset(shards: [try TokenShard(path: path)], seqLen: T)
        XCTAssertEqual(set.count, 112)
        let world = 3
        var perRank: [Set<Int>] = []
        for r in 0..<world {
            let loader = MixtureLoader(sources: [set], names: ["a"], stages: [MixtureStage(startTokens: 0, weights: [1])],
                                       microBatch: 1, seed: 5, rank: r, worldSize: world)
            let share = (set.count - r + world - 1) / world
            var mine: [Int] = []
            for _ in 0..<share { mine.append(Int(loader.next().tokens[0]) / T) }
            XCTAssertEqual(loader.position.sources[0].epoch, 0)
            XCTAssertEqual(Set(mine).count, mine.count, "rank \(r) drew a window twice in one epoch")
            perRank.append(Set(mine))
            _ = loader.next()
            XCTAssertEqual(loader.position.sources[0].epoch, 1, "rank \(r) moves to the next epoch after its share")
        }
        for a in 0..<world { for b in (a + 1)..<world { XCTAssertTrue(perRank[a].isDisjoint(with: perRank[b])) } }
        XCTAssertEqual(perRank.reduce(Set<Int>()) { $0.union($1) }, Set(0..<set.count))
    }

    func testWindowsOfOneDocumentAreNotDrawnInARow() throws {
        // One long document: a shuffled order must not read its consecutive windows back to back.
        let T = 8
        let path = dir + "/long.bin"
        try TokenShard.write(documents: [(0..<4001).map { Int32($0 % 60_000) }], vocabSize: 65_536, to: path)
        let set = WindowDataset(shards: [try TokenShard(path: path)], seqLen: T)
        let loader = MixtureLoader(sources: [set], names: ["long"], stages: [MixtureStage(startTokens: 0, weights: [1])], microBatch: 1, seed: 9)
        var starts: [Int] = []
        for _ in 0..<200 { starts.append(Int(loader.next().tokens[0])) }
        let consecutive = zip(starts, starts.dropFirst()).filter { $1 - $0 == T }.count
        XCTAssertLessThan(consecutive, 5, "consecutive windows drawn in a row \(consecutive) times")
    }

    func testMixtureConfigErrorsNameTheKey() {
        func error(_ data: String) -> String {
            let yaml = """
            model: {vocab_size: 64, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 32}
            data: \(data)
            training: {seq_len: 8, micro_batch: 2, steps: 3}
            """
            do { _ = try TrainConfig.parse(yaml: yaml, path: "m.yaml").data.mixtureStages(); return "" } catch { return "\(error)" }
        }
        XCTAssertTrue(error("{sources: [{name: web, shards: [w.bin]}], stages: [{start_tokens: 0, weights: {code: 1}}]}").contains("'code' is not a source"))
        XCTAssertTrue(error("{sources: [{name: web, shards: [w.bin]}], stages: [{start_tokens: 10, weights: {web: 1}}]}").contains("start_tokens: 0"))
        XCTAssertTrue(error("{train: [x.bin], sources: [{name: web, shards: [w.bin]}]}").contains("either"))
        XCTAssertTrue(error("{sources: [{name: web, shards: [w.bin], weight: -1}]}").contains("non-negative"))
        XCTAssertEqual(error("""
            {sources: [{name: web, shards: [w.bin]}, {name: code, shards: [c.bin]}, {name: math, shards: [m.bin]}],
             stages: [{start_tokens: 0, weights: {web: 85, code: 12, math: 3}}, {start_tokens: 1000, weights: {web: 75, code: 15, math: 10}},
                      {start_tokens: 2000, weights: {web: 63, code: 24, math: 13}}]}
            """), "")
    }
}
