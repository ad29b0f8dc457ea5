import Foundation
import SmolModel
import SmolTensor

/// Non-overlapping windows of seqLen + 1 tokens over a set of shards: inputs are the first seqLen
/// tokens, targets the last seqLen. Its memory is one entry per window, fixed for the run
/// (the playbook's loader whose index grew with the step count slowed the run as it went).
public final class WindowDataset {
    public let shards: [TokenShard]
    public let seqLen: Int
    let shardOf: [Int32]
    let startOf: [Int]
    public var count: Int { startOf.count }

    /// `part` selects which windows of each shard to keep, given (index, windows in that shard).
    public init(shards: [TokenShard], seqLen: Int, part: (Int, Int) -> Bool = { _, _ in true }) {
        self.shards = shards; self.seqLen = seqLen
        var shardOf: [Int32] = [], startOf: [Int] = []
        for (s, shard) in shards.enumerated() {
            let windows = max(0, (shard.tokenCount - 1) / seqLen)
            for w in 0..<windows where part(w, windows) { shardOf.append(Int32(s)); startOf.append(w * seqLen) }
        }
        self.shardOf = shardOf; self.startOf = startOf
    }

    /// The windows of several datasets of the same sequence length, one after another.
    public init(concatenating parts: [WindowDataset]) {
        seqLen = parts.first?.seqLen ?? 1
        var shards: [TokenShard] = [], shardOf: [Int32] = [], startOf: [Int] = []
        for p in parts {
            precondition(p.seqLen == seqLen)
            shardOf += p.shardOf.map { $0 + Int32(shards.count) }
            startOf += p.startOf
            shards += p.shards
        }
        self.shards = shards; self.shardOf = shardOf; self.startOf = startOf
    }

    /// Splits each shard's windows: the last `fraction` become validation (at least one window
    /// when the fraction is positive and the shard has two or more).
    public static func split(shards: [TokenShard], seqLen: Int, validationFraction: Double) -> (train: WindowDataset, validation: WindowDataset) {
        func held(_ w: Int, _ n: Int) -> Bool {
            guard validationFraction > 0, n >= 2 else { return false }
            let k = min(n - 1, max(1, Int((Double(n) * validationFraction).rounded())))
            return w >= n - k
        }
        return (WindowDataset(shards: shards, seqLen: seqLen, part: { !held($0, $1) }),
                WindowDataset(shards: shards, seqLen: seqLen, part: held))
    }

    /// Writes window `w` into a batch row: tokens, targets, and each token's document start.
    func fill(window w: Int, row: Int, tokens: inout [Int32], targets: inout [Int32], documentStart: inout [Int32]) {
        let shard = shards[Int(shardOf[w])], s = startOf[w], T = seqLen
        var doc = shard.document(containing: s)
        var nextStart = doc + 1 < shard.documentCount ? shard.documentStart(doc + 1) : Int.max
        var begin = shard.documentStart(doc)
        for i in 0..<T {
            let t = s + i
            while t >= nextStart {
                doc += 1; begin = nextStart
                nextStart = doc + 1 < shard.documentCount ? shard.documentStart(doc + 1) : Int.max
            }
            tokens[row * T + i] = shard.token(t)
            targets[row * T + i] = shard.token(t + 1)
            documentStart[row * T + i] = Int32(max(0, begin - s))
        }
    }

    /// A batch of the given windows, in order.
    public func batch(windows: [Int]) -> TokenBatch {
        let n = windows.count * seqLen
        var b = TokenBatch(batch: windows.count, seqLen: seqLen, tokens: [Int32](repeating: 0, count: n),
                           targets: [Int32](repeating: 0, count: n), documentStart: [Int32](repeating: 0, count: n))
        fill(&b, windows: windows)
        return b
    }

    /// Fills an existing batch of the right shape in place (no allocation when it is uniquely held).
    public func fill(_ b: inout TokenBatch, windows: [Int]) {
        precondition(b.batch == windows.count && b.seqLen == seqLen)
        if b.documentStart == nil { b.documentStart = [Int32](repeating: 0, count: b.tokens.count) }
        for (row, w) in windows.enumerated() {
            fill(window: w, row: row, tokens: &b.tokens, targets: &b.targets, documentStart: &b.documentStart!)
        }
    }
}
