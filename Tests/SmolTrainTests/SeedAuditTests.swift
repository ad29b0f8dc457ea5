import XCTest
import SmolModel
import SmolTensor
@testable import SmolTrainer

/// The seed audit's rules on hand-made shards (the end-to-end drill is tests/test_tensor_parallel.py).
final class SeedAuditTests: XCTestCase {
    let names = ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.q_proj.bias",
                 "model.layers.0.mlp.down_proj.weight"]

    func values(_ seed: UInt64, _ n: Int = 64) -> [Float] {
        var rng = RandomStream(seed: seed, purpose: "audit-test")
        return (0..<n).map { _ in rng.nextNormal() }
    }

    func fingerprints(_ tensors: [[Float]]) -> [SeedAudit.Fingerprint] {
        tensors.map { t in t.withUnsafeBufferPointer { SeedAudit.fingerprint($0.baseAddress!, count: t.count) } }
    }

    /// Rank r's tensors (embedding replicated, q sharded, a zero bias, down sharded); `shard` picks the draws of each sharded one.
    func rank(_ shard: (String) -> [Float], embed: [Float]? = nil) -> [SeedAudit.Fingerprint] {
        fingerprints([embed ?? values(1), shard(names[1]), [Float](repeating: 0, count: 8), shard(names[3])])
    }

    func failure(_ all: [[SeedAudit.Fingerprint]], tp: Int) -> String? {
        do { _ = try SeedAudit.check(all, names: names, tp: tp); return nil } catch { return "\(error)" }
    }

    func testDistinctShardsAndEqualReplicasPass() {
        let r0 = rank { _ in self.values(10) }, r1 = rank { _ in self.values(11) }
        XCTAssertNil(failure([r0, r1], tp: 2))
        // DP = 2 × TP = 2: replicas equal rank for rank.
        XCTAssertNil(failure([r0, r1, r0, r1], tp: 2))
    }

    func testIdenticalShardsAreNamedWithTheirRanks() throws {
        let r = rank { _ in self.values(10) }
        let message = try XCTUnwrap(failure([r, r], tp: 2))
        XCTAssertTrue(message.contains("tensor-parallel ranks 0 and 1 hold identical shards of 2 tensor(s)"), message)
        XCTAssertTrue(message.contains("self_attn.q_proj.weight, mlp.down_proj.weight in layer 0"), message)
        // The zero bias is the same on both ranks and is not a shared seed.
        XCTAssertFalse(message.contains("q_proj.bias"), message)
    }

    func testPerfectlyCorrelatedShardsAreCaught() throws {
        let r0 = rank { _ in self.values(10) }, r1 = rank { _ in self.values(10).map { -2 * $0 + 0.5 } }
        let message = try XCTUnwrap(failure([r0, r1], tp: 2))
        XCTAssertTrue(message.contains("identical shards"), message)
    }

    func testReplicasThatDifferAreCaught() throws {
        let tpDiff = try XCTUnwrap(failure([rank({ _ in self.values(10) }), rank({ _ in self.values(11) }, embed: values(2))], tp: 2))
        XCTAssertTrue(tpDiff.contains("tensor-parallel ranks 0 and 1 hold different copies of 1 replicated tensor(s): model.embed_tokens.weight"), tpDiff)
        let r0 = rank { _ in self.values(10) }, r1 = rank { _ in self.values(11) }
        let dpDiff = try XCTUnwrap(failure([r0, r1, r0, rank { _ in self.values(12) }], tp: 2))
        XCTAssertTrue(dpDiff.contains("data-parallel replicas 1 and 3 differ in 2 tensor(s)"), dpDiff)
    }

    func testTensorParallelPlanSplitsAndJoins() {
        // A [4, 6] row-parallel (columns) tensor over 2 ranks, and a [4, 6] column-parallel (rows) one.
        let full = (0..<24).map(Float.init)
        for split in [TensorParallelPlan.Split.rows, .columns] {
            var joined = [Float](repeating: -1, count: 24)
            for r in 0..<2 {
                var part = [Float](repeating: 0, count: 12)
                full.withUnsafeBufferPointer { f in part.withUnsafeMutableBufferPointer { p in
                    TensorParallelPlan.extract(split, full: f.baseAddress!, fullShape: [4, 6], size: 2, rank: r, into: p.baseAddress!) } }
                var expected: [Float] = []
                if split == .rows {
                    expected = Array(full[(12 * r)..<(12 * r + 12)])
                } else {
                    for i in 0..<4 {
                        let start: Int = 6 * i + 3 * r
                        expected.append(contentsOf: full[start..<(start + 3)])
                    }
                }
                XCTAssertEqual(part, expected)
                part.withUnsafeBufferPointer { p in joined.withUnsafeMutableBufferPointer { j in
                    TensorParallelPlan.insert(split, local: p.baseAddress!, fullShape: [4, 6], size: 2, rank: r, into: j.baseAddress!) } }
            }
            XCTAssertEqual(joined, full)
        }
    }
}
