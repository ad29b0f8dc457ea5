import Foundation
import SmolModel

/// Best-fit decreasing: each item, longest first (ties by index), goes into the open bin with the
/// least room that still fits it, else a new bin. Returns the bins as item indices in ascending
/// order. Every length must be in 1...capacity.
public func bestFitDecreasing(lengths: [Int], capacity: Int) -> [[Int]] {
    precondition(capacity > 0 && lengths.allSatisfy { $0 >= 1 && $0 <= capacity })
    let order = lengths.indices.sorted { (lengths[$0], $1) > (lengths[$1], $0) }
    var bins: [[Int]] = []
    // Open bins by their room left; a bitmap of non-empty rooms finds the tightest fit in
    // capacity / 64 word reads.
    var byRoom = [[Int]](repeating: [], count: capacity + 1)
    var nonEmpty = [UInt64](repeating: 0, count: capacity / 64 + 1)
    func mark(_ r: Int, _ on: Bool) {
        if on { nonEmpty[r >> 6] |= 1 << UInt64(r & 63) } else { nonEmpty[r >> 6] &= ~(1 << UInt64(r & 63)) }
    }
    func tightest(atLeast need: Int) -> Int? {
        var word = need >> 6
        var bits = nonEmpty[word] & (~0 << UInt64(need & 63))
        while true {
            if bits != 0 { return word << 6 + bits.trailingZeroBitCount }
            word += 1
            if word >= nonEmpty.count { return nil }
            bits = nonEmpty[word]
        }
    }
    for i in order {
        let len = lengths[i]
        let bin: Int, room: Int
        if let r = tightest(atLeast: len) {
            bin = byRoom[r].removeLast()
            if byRoom[r].isEmpty { mark(r, false) }
            room = r
        } else {
            bin = bins.count; bins.append([]); room = capacity
        }
        bins[bin].append(i)
        let left = room - len
        if left > 0 { byRoom[left].append(bin); mark(left, true) }
    }
    return bins.map { $0.sorted() }
}

/// Conversations from chat shards (with loss masks) packed into rows of `seqLen` by best-fit
/// decreasing. A conversation of L tokens fills L − 1 positions (inputs c₀…c_{L−2}, targets
/// c₁…c_{L−1}, −1 where the mask says no loss); with intra-document masking, attention and RoPE
/// positions restart at each conversation. Conversations over seqLen + 1 tokens are truncated
/// (counted); rows end with padding that carries no loss.
public final class PackedConversations: TrainingSequences {
    public let shards: [TokenShard]
    public let seqLen: Int
    /// Row r holds items[rowStart[r]..<rowStart[r + 1]], each (shard, conversation).
    let rowStart: [Int]
    let items: [(shard: Int32, doc: Int32)]
    public var count: Int { rowStart.count - 1 }
    /// Conversations cut to seqLen + 1 tokens.
    public let truncated: Int
    /// Conversations packed, and positions they fill over positions available.
    public let conversations: Int
    public let efficiency: Double
    /// Time the packing took (the index of conversations and best-fit decreasing).
    public let packingSeconds: Double
    /// Each conversation weighs the same in the loss (its targets share a weight of 1), instead of
    /// each target. The loader then gives its batches loss weights.
    public var perSequence = false
    public var usesLossWeights: Bool { perSequence }

    /// `part` selects which conversations of each shard to keep, given (index, conversations in that shard).
    public init(shards: [TokenShard], seqLen: Int, part: (Int, Int) -> Bool = { _, _ in true }) {
        self.shards = shards; self.seqLen = seqLen
        let t0 = DispatchTime.now().uptimeNanoseconds
        var candidates: [(shard: Int32, doc: Int32)] = [], lengths: [Int] = []
        var truncated = 0
        for (s, shard) in shards.enumerated() {
            for d in 0..<shard.documentCount where part(d, shard.documentCount) {
                let L = shard.documentStart(d + 1) - shard.documentStart(d)
                if L < 2 { continue }
                if L > seqLen + 1 { truncated += 1 }
                candidates.append((Int32(s), Int32(d))); lengths.append(min(L, seqLen + 1) - 1)
            }
        }
        let bins = bestFitDecreasing(lengths: lengths, capacity: seqLen)
        var rowStart = [0], items: [(shard: Int32, doc: Int32)] = []
        items.reserveCapacity(candidates.count)
        for bin in bins {
            for i in bin { items.append(candidates[i]) }
            rowStart.append(items.count)
        }
        self.rowStart = rowStart; self.items = items; self.truncated = truncated
        conversations = candidates.count
        efficiency = bins.isEmpty ? 0 : Double(lengths.reduce(0, +)) / Double(bins.count * seqLen)
        packingSeconds = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
    }

    public func fill(window w: Int, row: Int, into b: inout TokenBatch) {
        let T = seqLen, base = row * T
        var pos = 0
        for k in rowStart[w]..<rowStart[w + 1] {
            let (s, d) = items[k]
            let shard = shards[Int(s)]
            let a = shard.documentStart(Int(d))
            let n = min(shard.documentStart(Int(d) + 1) - a, T + 1) - 1
            var counted = 0
            for i in 0..<n {
                let loss = shard.carriesLoss(a + i + 1)
                b.tokens[base + pos + i] = shard.token(a + i)
                b.targets[base + pos + i] = loss ? shard.token(a + i + 1) : -1
                b.documentStart![base + pos + i] = Int32(pos)
                counted += loss ? 1 : 0
            }
            // Per-sequence normalisation: the conversation's targets share a weight of 1.
            let weight: Float = perSequence ? 1 / Float(max(counted, 1)) : 1
            for i in 0..<n { b.lossWeights?[base + pos + i] = weight }
            pos += n
        }
        // Padding: each position its own one-token document, no loss.
        while pos < T {
            b.tokens[base + pos] = 0; b.targets[base + pos] = -1; b.documentStart![base + pos] = Int32(pos)
            b.lossWeights?[base + pos] = 0
            pos += 1
        }
    }
}
