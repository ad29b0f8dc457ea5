import Foundation
import SmolTensor
import SmolWeights
import SmolModel

public struct GenerationOptions: Sendable {
    public var maxTokens = 256
    /// 0 is greedy.
    public var temperature: Float = 0.7
    public var topK = 0
    public var topP: Float = 1
    public var minP: Float = 0
    public var seed: UInt64 = 0
    /// Generation ends before the first occurrence of any of these strings.
    public var stop: [String] = []
    /// Report each generated token's log-probability and this many most likely alternatives
    /// (nil: none). Log-probabilities are the model's own (temperature 1), as OpenAI's API reports them.
    public var logprobs: Int? = nil
    public init() {}
}

/// A generated token's log-probability under the model, with the most likely alternatives.
public struct TokenLogprob: Sendable {
    public var id: Int32
    public var logprob: Double
    public var top: [(id: Int32, logprob: Double)]
}

public struct GenerationResult: Sendable {
    public var ids: [Int32]
    public var text: String
    /// "stop" (EOS or a stop string), "length", or "cancelled" (the caller asked to stop).
    public var finishReason: String
    public var promptTokens: Int
    public var prefillSeconds: Double
    public var decodeSeconds: Double
    /// One per generated token when `options.logprobs` is set.
    public var logprobs: [TokenLogprob] = []
}

/// Prompt in, text out: batched prefill through the KV cache, then one token at a time, with
/// EOS and stop strings, streaming text as soon as it is valid UTF-8 and cannot be the start of a
/// stop string.
public final class Generator {
    public let pretrained: PretrainedModel
    public let session: InferenceSession

    public init(_ pretrained: PretrainedModel, contextLength: Int? = nil, kvCache: KVCacheFormat = .f32,
                prefillPrecision: MatmulPrecision = .fp32) {
        self.pretrained = pretrained
        session = InferenceSession(model: pretrained.model, capacity: contextLength, kvCache: kvCache, prefillPrecision: prefillPrecision)
    }

    /// `isCancelled` is asked before each new token; when it answers true, generation ends with
    /// finish reason "cancelled" (a server's client went away).
    public func generate(promptIds: [Int32], options: GenerationOptions, reuseCache: Bool = false,
                         isCancelled: () -> Bool = { false },
                         onText: (String) -> Void = { _ in }) throws -> GenerationResult {
        let tokenizer = pretrained.tokenizer
        var sampler = Sampler(temperature: options.temperature, topK: options.topK, topP: options.topP, minP: options.minP, seed: options.seed)
        guard !promptIds.isEmpty else { throw HubError.invalid(path: pretrained.source, reason: "empty prompt") }
        let budget = min(options.maxTokens, session.capacity - promptIds.count)
        guard budget >= 0 else {
            throw HubError.invalid(path: pretrained.source, reason: "prompt of \(promptIds.count) tokens does not fit the \(session.capacity)-token context")
        }
        if !reuseCache { session.reset() }
        let t0 = Date()
        var logits = try session.feed(promptIds)
        let prefill = Date().timeIntervalSince(t0)
        var ids: [Int32] = [], emitted = 0, finish = "length"
        var logprobs: [TokenLogprob] = []
        var text = ""
        let t1 = Date()
        while ids.count < budget {
            if isCancelled() { finish = "cancelled"; break }
            let next = sampler.next(logits)
            if pretrained.stopIds.contains(next) { finish = "stop"; break }
            if let k = options.logprobs { logprobs.append(Generator.logprob(of: next, in: logits, top: k)) }
            ids.append(next)
            text = tokenizer.decode(ids)
            if let cut = options.stop.compactMap({ text.range(of: $0)?.lowerBound }).min() {
                text = String(text[..<cut]); finish = "stop"; break
            }
            // Hold back an incomplete UTF-8 character and anything that may begin a stop string.
            if !text.hasSuffix("\u{FFFD}") {
                let safe = text.count - Generator.heldBack(text, stops: options.stop)
                if safe > emitted {
                    let start = text.index(text.startIndex, offsetBy: emitted), end = text.index(text.startIndex, offsetBy: safe)
                    onText(String(text[start..<end])); emitted = safe
                }
            }
            if ids.count == budget { break }
            logits = try session.feed([next])
        }
        if text.count > emitted { onText(String(text.dropFirst(emitted))) }
        return GenerationResult(ids: ids, text: text, finishReason: finish, promptTokens: promptIds.count,
                                prefillSeconds: prefill, decodeSeconds: Date().timeIntervalSince(t1), logprobs: logprobs)
    }

    /// log softmax(logits)[id], and the `top` most likely tokens with theirs (in float64).
    static func logprob(of id: Int32, in logits: [Float], top: Int) -> TokenLogprob {
        let m = Double(logits.max() ?? 0)
        var sum = 0.0
        for l in logits { sum += Foundation.exp(Double(l) - m) }
        let lse = m + Foundation.log(sum)
        var best: [(id: Int32, logprob: Double)] = []
        if top > 0 {
            for (i, l) in logits.enumerated() where best.count < top || Double(l) - lse > best[best.count - 1].logprob {
                best.append((Int32(i), Double(l) - lse))
                best.sort { $0.logprob > $1.logprob }
                if best.count > top { best.removeLast() }
            }
        }
        return TokenLogprob(id: id, logprob: Double(logits[Int(id)]) - lse, top: best)
    }

    /// Characters at the end of `text` that are a proper prefix of some stop string.
    static func heldBack(_ text: String, stops: [String]) -> Int {
        var held = 0
        for s in stops where !s.isEmpty {
            for n in stride(from: min(s.count - 1, text.count), to: held, by: -1) where text.hasSuffix(s.prefix(n)) {
                held = n; break
            }
        }
        return held
    }
}
