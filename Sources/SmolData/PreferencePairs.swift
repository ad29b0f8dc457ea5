import Foundation
import SmolModel

/// Preference pairs from chat shards written by `smol data prepare --format preference`: documents
/// 2j (chosen) and 2j + 1 (rejected) of a shard are pair j, their loss masks on the completions.
/// Row w holds pair w: the chosen conversation from position 0, the rejected one after it as a
/// second document (attention and RoPE positions restart there), then padding without loss. Pairs
/// that do not fit in `seqLen` positions are left out (counted in `overLength`).
public final class PreferencePairs: TrainingSequences {
    public let shards: [TokenShard]
    public let seqLen: Int
    /// Pair w is documents 2·items[w].pair and 2·items[w].pair + 1 of shard items[w].shard.
    let items: [(shard: Int32, pair: Int32)]
    public var count: Int { items.count }
    public let overLength: Int
    /// The reference model's Σ log p over each pair's chosen and rejected completion (2 per pair),
    /// set before training; until then the batches carry zeros.
    public var reference: [Double]

    /// `part` selects which pairs of each shard to keep, given (index, pairs in that shard).
    public init(shards: [TokenShard], seqLen: Int, part: (Int, Int) -> Bool = { _, _ in true }) {
        self.shards = shards; self.seqLen = seqLen
        var items: [(shard: Int32, pair: Int32)] = [], over = 0
        for (s, shard) in shards.enumerated() {
            let pairs = shard.documentCount / 2
            for j in 0..<pairs where part(j, pairs) {
                let chosen = shard.documentStart(2 * j + 1) - shard.documentStart(2 * j)
                let rejected = shard.documentStart(2 * j + 2) - shard.documentStart(2 * j + 1)
                if chosen < 2 || rejected < 2 || chosen + rejected - 2 > seqLen { over += 1; continue }
                items.append((Int32(s), Int32(j)))
            }
        }
        self.items = items; overLength = over
        reference = [Double](repeating: 0, count: 2 * items.count)
    }

    public func fill(window w: Int, row: Int, into b: inout TokenBatch) {
        let T = seqLen, base = row * T
        let (s, j) = items[w]
        let shard = shards[Int(s)]
        var pos = 0
        for d in [2 * Int(j), 2 * Int(j) + 1] {
            let a = shard.documentStart(d), n = shard.documentStart(d + 1) - a - 1
            let start = Int32(pos)
            for i in 0..<n {
                b.tokens[base + pos + i] = shard.token(a + i)
                b.targets[base + pos + i] = shard.carriesLoss(a + i + 1) ? shard.token(a + i + 1) : -1
                b.documentStart![base + pos + i] = start
                b.lossWeights?[base + pos + i] = 1
            }
            pos += n
        }
        while pos < T {
            b.tokens[base + pos] = 0; b.targets[base + pos] = -1; b.documentStart![base + pos] = Int32(pos)
            b.lossWeights?[base + pos] = 0
            pos += 1
        }
        if b.referenceLogProbs?.count != 2 * b.batch { b.referenceLogProbs = [Double](repeating: 0, count: 2 * b.batch) }
        b.referenceLogProbs![2 * row] = reference[2 * w]
        b.referenceLogProbs![2 * row + 1] = reference[2 * w + 1]
    }

    /// A fingerprint of the pairs as rows (their tokens and loss masks, in order): the data half of
    /// the reference cache's key.
    public func fingerprint() -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ x: Int32) {
            var v = UInt32(bitPattern: x)
            for _ in 0..<4 { h = (h ^ UInt64(v & 0xff)) &* 0x100_0000_01b3; v >>= 8 }
        }
        mix(Int32(seqLen))
        for (s, j) in items {
            let shard = shards[Int(s)]
            for d in [2 * Int(j), 2 * Int(j) + 1] {
                let a = shard.documentStart(d), e = shard.documentStart(d + 1)
                mix(Int32(e - a))
                for i in a..<e { mix(shard.token(i)); mix(shard.carriesLoss(i) ? 1 : 0) }
            }
        }
        return String(format: "%016llx", h)
    }
}
