import Foundation
import SmolModel
import SmolTensor

/// Whether item `i` of a shard's `n` is held out for validation: the last `fraction` of them (at
/// least one when the fraction is positive and the shard has two or more).
public func heldOut(fraction: Double) -> (_ i: Int, _ n: Int) -> Bool {
    { w, n in
        guard fraction > 0, n >= 2 else { return false }
        let k = min(n - 1, max(1, Int((Double(n) * fraction).rounded())))
        return w >= n - k
    }
}

/// A fixed set of training rows of `seqLen` tokens that a loader draws from by index: pretraining
/// windows (`WindowDataset`) or packed conversations (`PackedConversations`).
public protocol TrainingSequences: AnyObject {
    var seqLen: Int { get }
    /// Rows in the set.
    var count: Int { get }
    /// Writes row `w` into row `row` of `b`: tokens, targets (−1 where no loss), each token's
    /// document start within the row, and loss weights when `b` has them.
    func fill(window w: Int, row: Int, into b: inout TokenBatch)
    /// Whether rows carry loss weights other than 1 (the batches then hold `lossWeights`).
    var usesLossWeights: Bool { get }
}

extension TrainingSequences {
    public var usesLossWeights: Bool { false }

    /// A batch of the given rows, in order.
    public func batch(windows: [Int]) -> TokenBatch {
        let n = windows.count * seqLen
        var b = TokenBatch(batch: windows.count, seqLen: seqLen, tokens: [Int32](repeating: 0, count: n),
                           targets: [Int32](repeating: 0, count: n), documentStart: [Int32](repeating: 0, count: n))
        if usesLossWeights { b.lossWeights = [Float](repeating: 1, count: n) }
        fill(&b, windows: windows)
        return b
    }

    /// A batch of `rows` rows: `windows` in order, then copies of the first that carry no loss, so a
    /// short last chunk of an evaluation keeps the activation shape.
    public func batch(windows: [Int], paddedTo rows: Int) -> TokenBatch {
        precondition(!windows.isEmpty && windows.count <= rows)
        var b = batch(windows: windows + Array(repeating: windows[0], count: rows - windows.count))
        for k in (windows.count * seqLen)..<(rows * seqLen) { b.targets[k] = -1 }
        return b
    }

    /// Fills an existing batch of the right shape in place (no allocation when it is uniquely held).
    public func fill(_ b: inout TokenBatch, windows: [Int]) {
        precondition(b.batch == windows.count && b.seqLen == seqLen)
        if b.documentStart == nil { b.documentStart = [Int32](repeating: 0, count: b.tokens.count) }
        for (row, w) in windows.enumerated() { fill(window: w, row: row, into: &b) }
    }
}

/// Several sets of one sequence length, one after another (the held-out parts of several sources).
public final class ConcatenatedSequences: TrainingSequences {
    public let parts: [TrainingSequences]
    public let seqLen: Int
    public var count: Int { parts.reduce(0) { $0 + $1.count } }
    public var usesLossWeights: Bool { parts.contains { $0.usesLossWeights } }

    public init(_ parts: [TrainingSequences], seqLen: Int) {
        precondition(parts.allSatisfy { $0.seqLen == seqLen })
        self.parts = parts; self.seqLen = seqLen
    }

    public func fill(window w: Int, row: Int, into b: inout TokenBatch) {
        var w = w
        for p in parts {
            if w < p.count { return p.fill(window: w, row: row, into: &b) }
            w -= p.count
        }
        preconditionFailure("row index past the end of the concatenated sets")
    }
}

/// Non-overlapping windows of seqLen + 1 tokens over a set of shards: inputs are the first seqLen
/// tokens, targets the last seqLen. Its memory is one entry per window, fixed for the run
/// (the playbook's loader whose index grew with the step count slowed the run as it went).
public final class WindowDataset: TrainingSequences {
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

    /// Splits each shard's windows: the last `fraction` become validation (at least one window
    /// when the fraction is positive and the shard has two or more).
    public static func split(shards: [TokenShard], seqLen: Int, validationFraction: Double) -> (train: WindowDataset, validation: WindowDataset) {
        let held = heldOut(fraction: validationFraction)
        return (WindowDataset(shards: shards, seqLen: seqLen, part: { !held($0, $1) }),
                WindowDataset(shards: shards, seqLen: seqLen, part: held))
    }

    /// Writes window `w` into a batch row: tokens, targets, and each token's document start.
    public func fill(window w: Int, row: Int, into b: inout TokenBatch) {
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
            b.tokens[row * T + i] = shard.token(t)
            b.targets[row * T + i] = shard.token(t + 1)
            b.documentStart![row * T + i] = Int32(max(0, begin - s))
            b.lossWeights?[row * T + i] = 1
        }
    }
}
