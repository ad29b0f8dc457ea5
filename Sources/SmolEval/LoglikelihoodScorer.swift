import Foundation
import SmolWeights
import SmolHub
import SmolModel
import SmolTensor

/// Log-likelihood of one continuation after its context.
public struct ContinuationScore: Sendable, Equatable {
    /// Σ log p(token) over the continuation's tokens (natural log).
    public var logLikelihood: Double
    /// Every continuation token was the model's argmax.
    public var isGreedy: Bool
    public var tokens: Int
}

/// Scores continuations by log-likelihood.
///
/// - Shared prefixes are computed once: the KV cache keeps the previous context and only the part
///   after the longest common prefix is fed (few-shot examples, the query shared by all choices).
/// - Batched: up to `batchSize` continuations of one context go through the model in one forward
///   pass (every matmul one GEMM over all of them), each attending to the context and itself.
/// - Batch-size invariant by construction: every token's logits are computed by the same row-wise
///   operations whatever else shares the pass (`InferenceSession.rowInvariant`, per-branch
///   attention laid out as if alone), so scores are bit-identical for every batch size.
public final class LoglikelihoodScorer {
    public let model: PretrainedModel
    public let batchSize: Int
    let session: InferenceSession
    private var cached: [Int32] = []

    /// `precision`: the input format of every projection's and the head's GEMM (bf16 falls back to
    /// fp32 on a CPU without the kernels: `MatmulPrecision.resolve`). The bf16 kernels sum each row
    /// in the same order whatever the number of rows, so scores stay batch-size invariant.
    public init(model: PretrainedModel, batchSize: Int = 16, contextLength: Int? = nil, precision: MatmulPrecision = .fp32) {
        self.model = model
        self.batchSize = max(1, batchSize)
        let length = min(contextLength ?? 2048, model.config.maxPositionEmbeddings)
        session = InferenceSession(model: model.model, capacity: length, chunk: 128, prefillPrecision: precision)
        session.rowInvariant = true
    }

    public var capacity: Int { session.capacity }

    /// Context and continuation token ids split as lm-evaluation-harness splits them: the
    /// context's trailing whitespace (Python's `rstrip()`: newlines and tabs too) moves to the continuation, the pair is encoded whole and the
    /// continuation is what follows the context's own encoding. A BOS is added when the tokenizer's
    /// post-processor adds one (not under a chat template, whose text carries it).
    public func encode(context: String, continuation: String, addSpecialTokens: Bool) -> (context: [Int32], continuation: [Int32]) {
        var ctx = context, cont = continuation
        let trailing = ctx.reversed().prefix { $0.isWhitespace }.count
        if trailing > 0 { cont = String(ctx.suffix(trailing)) + cont; ctx = String(ctx.dropLast(trailing)) }
        let tok = model.tokenizer
        let whole = tok.encode(ctx + cont, addSpecialTokens: addSpecialTokens)
        var ctxIds = tok.encode(ctx, addSpecialTokens: addSpecialTokens)
        var contIds = Array(whole.dropFirst(min(ctxIds.count, whole.count)))
        if ctxIds.isEmpty { ctxIds = [prefixToken] }
        if contIds.isEmpty { contIds = tok.encode(cont, addSpecialTokens: false) }
        return (ctxIds, contIds)
    }

    /// Forgets the cached prefix, so what is scored next does not depend on what was scored before
    /// (a task's scores must not move with the tasks evaluated ahead of it).
    public func resetCache() { session.reset(); cached = [] }

    /// The token a context-free continuation is conditioned on: BOS, else EOS (lm-eval's choice).
    public var prefixToken: Int32 {
        if let b = model.bosToken, let id = model.tokenizer.id(of: b) { return id }
        if let e = model.eosToken, let id = model.tokenizer.id(of: e) { return id }
        return 0
    }

    /// Scores each continuation after `context`. The context is cut from the left if context and
    /// the longest continuation do not fit the model's window (as lm-eval does).
    public func score(context: [Int32], continuations: [[Int32]]) throws -> [ContinuationScore] {
        guard !context.isEmpty else { throw EvalError("empty context") }
        let longest = continuations.map(\.count).max() ?? 0
        guard longest < session.capacity else {
            throw EvalError("a continuation of \(longest) tokens does not fit the \(session.capacity)-token window")
        }
        let ctx = Array(context.suffix(session.capacity - longest))
        // Reuse the cached prefix; at least the context's last token is fed so its logits exist.
        var common = 0
        while common < min(cached.count, ctx.count - 1), cached[common] == ctx[common] { common += 1 }
        session.truncate(to: common)
        cached = Array(cached.prefix(common))
        let last = try session.feed(Array(ctx[common...]))
        cached = ctx

        var results = [ContinuationScore](repeating: ContinuationScore(logLikelihood: 0, isGreedy: true, tokens: 0), count: continuations.count)
        for (i, c) in continuations.enumerated() {
            guard let first = c.first else { continue }
            let (lp, top) = LoglikelihoodScorer.logProb(last, token: first)
            results[i] = ContinuationScore(logLikelihood: lp, isGreedy: top, tokens: c.count)
        }
        // The rest of each continuation: feed all but its last token, read the next token's logits.
        let pending = continuations.indices.filter { continuations[$0].count > 1 }
        var batch: [Int] = [], batchTokens = 0
        func flush() throws {
            guard !batch.isEmpty else { return }
            let logits = try session.feedBranches(batch.map { Array(continuations[$0].dropLast()) })
            for (b, i) in batch.enumerated() { accumulate(&results[i], logits: logits[b], continuation: continuations[i]) }
            batch = []; batchTokens = 0
        }
        for i in pending {
            let n = continuations[i].count - 1
            if n > session.chunk {   // longer than one pass: fed on its own, then the cache is rewound
                let logits = try session.feed(Array(continuations[i].dropLast()), allLogits: true)
                session.truncate(to: ctx.count)
                accumulate(&results[i], logits: logits, continuation: continuations[i])
                continue
            }
            if batch.count == batchSize || batchTokens + n > session.chunk { try flush() }
            batch.append(i); batchTokens += n
        }
        try flush()
        return results
    }

    private func accumulate(_ r: inout ContinuationScore, logits: [Float], continuation c: [Int32]) {
        let V = model.config.vocabSize
        logits.withUnsafeBufferPointer { l in
            for j in 1..<c.count {
                let (lp, top) = LoglikelihoodScorer.logProb(UnsafeBufferPointer(rebasing: l[(j - 1) * V ..< j * V]), token: c[j])
                r.logLikelihood += lp
                r.isGreedy = r.isGreedy && top
            }
        }
    }

    /// log softmax(logits)[token] (max-shifted, summed in Double) and whether token is the argmax.
    static func logProb<C: RandomAccessCollection>(_ logits: C, token: Int32) -> (Double, Bool) where C.Element == Float, C.Index == Int {
        var m = -Float.infinity, arg = 0
        for i in logits.indices where logits[i] > m { m = logits[i]; arg = i - logits.startIndex }
        var s = 0.0
        for v in logits { s += Double((v - m)).exp }
        let x = Double(logits[logits.startIndex + Int(token)] - m)
        return (x - Foundation.log(s), arg == Int(token))
    }

    /// Log-likelihood of a whole text (perplexity tasks): disjoint windows of the model's length,
    /// the first conditioned on the prefix token, each later one on the token before it (lm-eval's
    /// rolling windows).
    public func scoreText(_ tokens: [Int32]) throws -> Double {
        guard !tokens.isEmpty else { return 0 }
        let window = session.capacity - 1
        var total = 0.0, start = 0
        while start < tokens.count {
            let end = min(start + window, tokens.count)
            let input = [start == 0 ? prefixToken : tokens[start - 1]] + tokens[start..<end]
            session.reset(); cached = []
            // The last input token predicts nothing: feed [prev, t_start ..< t_end-1].
            let logits = try session.feed(Array(input.dropLast()), allLogits: true)
            let V = model.config.vocabSize
            logits.withUnsafeBufferPointer { l in
                for j in start..<end {
                    let row = j - start
                    total += LoglikelihoodScorer.logProb(UnsafeBufferPointer(rebasing: l[row * V ..< (row + 1) * V]), token: tokens[j]).0
                }
            }
            start = end
        }
        session.reset()
        return total
    }
}

private extension Double {
    var exp: Double { Foundation.exp(self) }
}
