import Foundation
import SmolTensor

/// Draws the next token from logits: greedy at temperature 0; otherwise softmax(logits / T)
/// filtered, in llama.cpp's and transformers' order, by top-k, then top-p (the smallest set whose
/// probability reaches p), then min-p (tokens at least min-p × the top probability), renormalised.
/// The counter-based stream makes a seed reproduce a sample.
public struct Sampler {
    public var temperature: Float
    public var topK: Int
    public var topP: Float
    public var minP: Float
    public var rng: RandomStream

    public init(temperature: Float = 0.8, topK: Int = 40, topP: Float = 1, minP: Float = 0, seed: UInt64 = 0) {
        self.temperature = temperature; self.topK = topK; self.topP = topP; self.minP = minP
        rng = RandomStream(seed: seed, purpose: "sample")
    }

    public static func argmax(_ logits: [Float]) -> Int32 {
        var best = 0
        for i in 1..<logits.count where logits[i] > logits[best] { best = i }
        return Int32(best)
    }

    public mutating func next(_ logits: [Float]) -> Int32 {
        if temperature <= 0 { return Sampler.argmax(logits) }
        let k = topK > 0 ? min(topK, logits.count) : logits.count
        // Candidates: sorted by logit (ties by id); a full sort only when top-k keeps everything.
        var order: [Int]
        if k < logits.count {
            var heap: [Int] = []   // the k best so far, kept sorted descending
            heap.reserveCapacity(k + 1)
            for i in logits.indices {
                if heap.count == k, logits[i] <= logits[heap[k - 1]] { continue }
                var lo = 0, hi = heap.count
                while lo < hi { let mid = (lo + hi) / 2; if logits[heap[mid]] >= logits[i] { lo = mid + 1 } else { hi = mid } }
                heap.insert(i, at: lo)
                if heap.count > k { heap.removeLast() }
            }
            order = heap
        } else {
            order = logits.indices.sorted { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }
        }
        let top = logits[order[0]]
        var probs = order.map { Double(expf((logits[$0] - top) / temperature)) }
        var total = probs.reduce(0, +)
        var keep = probs.count
        if topP < 1 {
            var cumulative = 0.0
            for (i, p) in probs.enumerated() {
                cumulative += p / total
                if cumulative >= Double(topP) { keep = i + 1; break }
            }
        }
        if minP > 0 {
            let threshold = Double(minP) * probs[0]   // probs[0] is the largest
            keep = min(keep, max(1, probs.prefix(keep).firstIndex { $0 < threshold } ?? keep))
        }
        order.removeSubrange(keep...); probs.removeSubrange(keep...)
        total = probs.reduce(0, +)
        var u = rng.nextDouble() * total
        for (i, p) in zip(order, probs) { u -= p; if u <= 0 { return Int32(i) } }
        return Int32(order.last!)
    }
}
