import SmolModel
import SmolTensor

/// Mixture weights from a token count on (SmolLM3's web/code/math 85/12/3 → 75/15/10 → 63/24/13).
public struct MixtureStage: Sendable, Equatable {
    public let startTokens: Int
    /// One weight per source, in the loader's source order; normalised when drawing.
    public let weights: [Double]
    public init(startTokens: Int, weights: [Double]) { self.startTokens = startTokens; self.weights = weights }
}

/// Where the loader stands: sequences this rank has drawn, and per source the epoch and how far
/// this rank has read into that epoch's order. Its size is one entry per source, whatever the run length.
public struct DataPosition: Codable, Equatable, Sendable {
    public struct Source: Codable, Equatable, Sendable {
        public var epoch = 0, offset = 0
        /// Windows this rank has drawn from the source over the run.
        public var drawn = 0
    }
    public var samples = 0
    public var sources: [Source] = []
    /// The long-context stage this position belongs to (nil: the first), and each source's tokens
    /// drawn in the stages before it.
    public var contextStage: Int?
    public var earlierTokens: [Int]?
    enum CodingKeys: String, CodingKey { case samples, sources, contextStage = "context_stage", earlierTokens = "earlier_tokens" }
    public init(sources: Int = 0) { self.sources = Array(repeating: Source(), count: sources) }

    /// The position a new context stage starts from: every source at the start of a fresh order
    /// (windows of the new length), the samples drawn and the tokens so far kept.
    public func startingStage(_ k: Int, seqLen previousSeqLen: Int) -> DataPosition {
        var p = DataPosition(sources: sources.count)
        p.samples = samples; p.contextStage = k
        p.earlierTokens = sources.indices.map { (earlierTokens?[$0] ?? 0) + sources[$0].drawn * previousSeqLen }
        return p
    }

    /// Rank `rank`'s position among `ranks` data-parallel ranks, from the positions of the ranks that
    /// wrote a checkpoint. Same count: that rank's own (the resume is exact). Another count: the
    /// samples drawn are shared out again, and in each source the new ranks continue after the part
    /// of the epoch's order every old rank had read (windows read past it by some ranks may be seen
    /// twice; none is skipped).
    public static func resharded(_ old: [DataPosition], toRanks ranks: Int, rank: Int) -> DataPosition {
        if old.count == ranks { return old[rank] }
        var p = DataPosition(sources: old.first?.sources.count ?? 0)
        p.samples = old.reduce(0) { $0 + $1.samples } / ranks
        p.contextStage = old.first?.contextStage
        p.earlierTokens = old.first?.earlierTokens.map { t in t.indices.map { s in old.reduce(0) { $0 + ($1.earlierTokens?[s] ?? 0) } / ranks } }
        for s in p.sources.indices {
            // Old rank r read order positions r, r + W, …, (offset − 1)·W + r of its epoch.
            let first = old.indices.min { (old[$0].sources[s].epoch, old[$0].sources[s].offset * old.count + $0)
                < (old[$1].sources[s].epoch, old[$1].sources[s].offset * old.count + $1) }!
            let epoch = old[first].sources[s].epoch, consumed = old[first].sources[s].offset * old.count + first
            p.sources[s].epoch = epoch
            p.sources[s].offset = max(0, (consumed - rank + ranks - 1) / ranks)
            p.sources[s].drawn = old.reduce(0) { $0 + $1.sources[s].drawn } / ranks
        }
        return p
    }
}

/// Draws training sequences from weighted sources. Sequence g of the run (g = samples × world + rank)
/// picks its source with a uniform draw keyed by (seed, g) against the weights of the stage in force at
/// g × seq_len tokens, so every rank agrees on the stage schedule. Within a source, each epoch visits the
/// source's windows in an order drawn from (seed, source, epoch), shared by all ranks; rank r reads
/// positions r, r + world, … of it, so ranks' shards are disjoint and together cover the epoch. The
/// windows come from anywhere in the source, never a document's consecutive windows in a run.
public final class MixtureLoader {
    public let sources: [TrainingSequences]
    public let names: [String]
    public let stages: [MixtureStage]
    public let microBatch: Int
    public let seed: UInt64
    public let rank: Int, worldSize: Int
    public private(set) var position: DataPosition
    /// Mixed into each epoch's order (a context stage's windows get orders of their own).
    public var orderSalt = ""
    /// The global sequence and token count this loader's sequences start from: sequence g is at
    /// tokens.origin + (g − sequence.origin) × seq_len (a context stage changes seq_len mid-run).
    public var origin = (sequence: 0, tokens: 0)
    private var orders: [[Int]]
    private var orderEpochs: [Int]
    private var windows: [(source: Int, window: Int)] = []
    private var current: TokenBatch?

    public init(sources: [TrainingSequences], names: [String], stages: [MixtureStage], microBatch: Int, seed: UInt64,
                rank: Int = 0, worldSize: Int = 1, position: DataPosition? = nil) {
        precondition(!sources.isEmpty && sources.count == names.count && !stages.isEmpty)
        precondition(stages.allSatisfy { $0.weights.count == sources.count })
        self.sources = sources; self.names = names; self.microBatch = microBatch; self.seed = seed
        self.stages = stages.sorted { $0.startTokens < $1.startTokens }
        self.rank = rank; self.worldSize = worldSize
        self.position = position ?? DataPosition(sources: sources.count)
        orders = Array(repeating: [], count: sources.count)
        orderEpochs = Array(repeating: -1, count: sources.count)
    }

    public var seqLen: Int { sources[0].seqLen }

    /// The stage in force at a global token count.
    public func stage(atTokens tokens: Int) -> MixtureStage { stages.last { $0.startTokens <= tokens } ?? stages[0] }

    /// The source of the run's g-th sequence.
    public func source(ofSequence g: Int) -> Int {
        let w = stage(atTokens: origin.tokens + (g - origin.sequence) * seqLen).weights
        let total = w.reduce(0, +)
        var rng = RandomStream(seed: seed, purpose: "mixture", coordinates: [g])
        var u = rng.nextDouble() * total
        for (s, x) in w.enumerated() where x > 0 {
            if u < x { return s }
            u -= x
        }
        return w.lastIndex { $0 > 0 } ?? 0
    }

    /// The permutation of a source's windows for an epoch (all ranks compute the same one).
    public static func order(count: Int, seed: UInt64, source: String, epoch: Int) -> [Int] {
        var order = Array(0..<count)
        var rng = RandomStream(seed: seed, purpose: "data-order/" + source, coordinates: [epoch])
        for i in stride(from: count - 1, to: 0, by: -1) { order.swapAt(i, rng.nextInt(below: i + 1)) }
        return order
    }

    /// This rank's next window of source `s`, moving to the next epoch when its slice is used up.
    func nextWindow(_ s: Int) -> Int {
        var p = position.sources[s]
        let count = sources[s].count
        if p.offset * worldSize + rank >= count { p.epoch += 1; p.offset = 0 }
        if orderEpochs[s] != p.epoch {
            orders[s] = MixtureLoader.order(count: count, seed: seed, source: names[s] + orderSalt, epoch: p.epoch)
            orderEpochs[s] = p.epoch
        }
        let w = orders[s][p.offset * worldSize + rank]
        p.offset += 1; p.drawn += 1
        position.sources[s] = p
        return w
    }

    /// Tokens and epochs consumed per source by this rank.
    public var accounting: [(name: String, tokens: Int, epochs: Double)] {
        sources.indices.map { s in
            let perEpoch = max(1, (sources[s].count - rank + worldSize - 1) / worldSize)
            return (names[s], (position.earlierTokens?[s] ?? 0) + position.sources[s].drawn * seqLen, Double(position.sources[s].drawn) / Double(perEpoch))
        }
    }

    /// The next micro-batch; its buffers are reused from the previous call.
    public func next() -> TokenBatch {
        windows.removeAll(keepingCapacity: true)
        for _ in 0..<microBatch {
            let s = source(ofSequence: position.samples * worldSize + rank)
            windows.append((s, nextWindow(s)))
            position.samples += 1
        }
        var b = current ?? TokenBatch(batch: microBatch, seqLen: seqLen, tokens: [Int32](repeating: 0, count: microBatch * seqLen),
                                      targets: [Int32](repeating: 0, count: microBatch * seqLen),
                                      documentStart: [Int32](repeating: 0, count: microBatch * seqLen),
                                      lossWeights: sources.contains { $0.usesLossWeights } ? [Float](repeating: 1, count: microBatch * seqLen) : nil)
        current = nil                 // uniquely held while refilled
        for (row, w) in windows.enumerated() {
            sources[w.source].fill(window: w.window, row: row, into: &b)
        }
        current = b
        return b
    }
}
