import Foundation
import SmolTensor

/// Draws the next token from logits: greedy at temperature 0, otherwise softmax(logits / T)
/// restricted to the top-k, with a counter-based stream so a seed reproduces a sample.
public struct Sampler {
    public var temperature: Float
    public var topK: Int
    public var rng: RandomStream

    public init(temperature: Float = 0.8, topK: Int = 40, seed: UInt64 = 0) {
        self.temperature = temperature; self.topK = topK
        rng = RandomStream(seed: seed, purpose: "sample")
    }

    public mutating func next(_ logits: [Float]) -> Int32 {
        if temperature <= 0 {
            var best = 0
            for i in 1..<logits.count where logits[i] > logits[best] { best = i }
            return Int32(best)
        }
        let k = topK > 0 ? min(topK, logits.count) : logits.count
        let top = logits.indices.sorted { logits[$0] > logits[$1] || (logits[$0] == logits[$1] && $0 < $1) }.prefix(k)
        let m = logits[top.first!]
        let weights = top.map { Double(expf((logits[$0] - m) / temperature)) }
        let total = weights.reduce(0, +)
        var u = rng.nextDouble() * total
        for (i, w) in zip(top, weights) { u -= w; if u <= 0 { return Int32(i) } }
        return Int32(top.last!)
    }

    /// Appends up to `maxTokens` sampled tokens to `prompt`, stopping at `stop`.
    public mutating func generate(model: LlamaModel, prompt: [Int32], maxTokens: Int, stop: Int32? = nil,
                                  onToken: (Int32) -> Void = { _ in }) throws -> [Int32] {
        var tokens = prompt
        var out: [Int32] = []
        for _ in 0..<maxTokens {
            let next = self.next(try model.nextTokenLogits(tokens))
            if next == stop { break }
            tokens.append(next); out.append(next)
            onToken(next)
        }
        return out
    }
}

#if canImport(Glibc)
import Glibc
#endif
