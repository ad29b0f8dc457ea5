import Foundation
import SmolModel
import SmolTensor
import SmolWeights

/// Does a model know a task's items by heart? Two per-item signals, compared with items the model
/// cannot have trained on:
///
/// - **Min-K%++** (Zhang et al., 2024): at each position t of the item's text,
///   (log p(xₜ) − μₜ) / σₜ, with μₜ and σₜ² the mean and variance of log p under the model's own
///   next-token distribution there; the item's score is the mean of the k% lowest. A text seen in
///   training has no surprising tokens: its lowest scores are higher.
/// - **Perturbation gap**: the item's Min-K%++ minus that of a perturbed copy (choices listed in the
///   prompt reordered; else digits changed; else, for cloze multiple choice, the gold answer
///   replaced by the next choice). A model that memorised the item prefers its exact text.
///
/// Per task: the shift of the items' mean Min-K%++ over the calibration items' and the mean gap
/// (over the calibration items' mean gap when there are calibration items), each with a percentile
/// bootstrap 95% interval, the AUC of items against calibration items, and a verdict.
public struct ContaminationAudit {
    public struct Options: Sendable {
        /// The share of lowest-scoring positions averaged (Min-K%++'s k, 20% in the paper).
        public var k = 0.2
        public var resamples = 2000
        public var seed: UInt64 = 1234
        public var limit: Int?
        public init() {}
    }

    /// How an item's perturbed copy was made.
    public enum Perturbation: String, Codable, Sendable {
        case choicesReordered = "choices_reordered", digitsChanged = "digits_changed", distractorAnswer = "distractor_answer", none
        /// Whether a model that has not seen the item should score both texts alike (then the gap
        /// alone is evidence; a distractor answer is also less likely to a model that merely knows the fact).
        public var meaningNeutral: Bool { self == .choicesReordered || self == .digitsChanged }
    }

    public struct ItemScore: Codable, Sendable {
        public let line: Int
        public let minKpp: Double
        public let perturbedMinKpp: Double?
        public let perturbation: Perturbation
        public let tokens: Int
        public var gap: Double? { perturbedMinKpp.map { minKpp - $0 } }
        enum CodingKeys: String, CodingKey { case line, minKpp = "min_k_pp", perturbedMinKpp = "perturbed_min_k_pp", perturbation, tokens, gap }
        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(line, forKey: .line); try c.encode(minKpp, forKey: .minKpp)
            try c.encodeIfPresent(perturbedMinKpp, forKey: .perturbedMinKpp); try c.encode(perturbation, forKey: .perturbation)
            try c.encode(tokens, forKey: .tokens); try c.encodeIfPresent(gap, forKey: .gap)
        }
        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            line = try c.decode(Int.self, forKey: .line); minKpp = try c.decode(Double.self, forKey: .minKpp)
            perturbedMinKpp = try c.decodeIfPresent(Double.self, forKey: .perturbedMinKpp)
            perturbation = try c.decode(Perturbation.self, forKey: .perturbation); tokens = try c.decode(Int.self, forKey: .tokens)
        }
        init(line: Int, minKpp: Double, perturbedMinKpp: Double?, perturbation: Perturbation, tokens: Int) {
            self.line = line; self.minKpp = minKpp; self.perturbedMinKpp = perturbedMinKpp; self.perturbation = perturbation; self.tokens = tokens
        }
    }

    /// A mean difference with its percentile bootstrap 95% interval.
    public struct Estimate: Codable, Sendable {
        public let mean: Double, low: Double, high: Double
        public var excludesZeroAbove: Bool { low > 0 }
    }

    public enum Verdict: String, Codable, Sendable {
        /// Both signals above the calibration items', or a meaning-neutral gap with no calibration set.
        case contaminated
        /// One signal only.
        case suspect
        case noEvidence = "no_evidence"
    }

    public struct TaskAudit: Codable, Sendable {
        public let task: String
        public let items: [ItemScore]
        public let calibration: [ItemScore]?
        /// Mean Min-K%++ of the items minus the calibration items' (nil without calibration items).
        public let shift: Estimate?
        /// Mean gap of the items (minus the calibration items' mean gap when there are any).
        public let gap: Estimate?
        /// P(an item's Min-K%++ > a calibration item's), ties counting half.
        public let auc: Double?
        public let verdict: Verdict
        public let reason: String
    }

    public let model: PretrainedModel
    public let options: Options

    public init(model: PretrainedModel, options: Options = Options()) { self.model = model; self.options = options }

    // MARK: - Min-K%++

    /// Min-K%++ of a token sequence (at least 2 tokens): the mean of the ⌈k·(n − 1)⌉ lowest
    /// per-position scores over the n − 1 predicted tokens.
    public func minKPlusPlus(_ tokens: [Int32]) throws -> Double {
        let scores = try positionScores(tokens)
        let m = max(1, Int((options.k * Double(scores.count)).rounded(.up)))
        return scores.sorted().prefix(m).reduce(0, +) / Double(m)
    }

    /// (log p(xₜ) − μₜ) / σₜ for t = 1 ..< n, in float64 from the model's float32 logits.
    public func positionScores(_ tokens: [Int32]) throws -> [Double] {
        let n = tokens.count, V = model.config.vocabSize
        guard n >= 2 else { throw EvalError("an item of fewer than 2 tokens has no Min-K%++") }
        let batch = TokenBatch(batch: 1, seqLen: n, tokens: tokens, targets: [Int32](repeating: -1, count: n))
        let logits = try model.model.logits(batch)
        var out: [Double] = []
        out.reserveCapacity(n - 1)
        for t in 0..<(n - 1) {
            let row = logits[(t * V)..<((t + 1) * V)]
            var m = -Double.infinity
            for z in row { m = max(m, Double(z)) }
            var sum = 0.0
            for z in row { sum += Foundation.exp(Double(z) - m) }
            let logZ = m + Foundation.log(sum)
            var mu = 0.0, second = 0.0
            for z in row {
                let lp = Double(z) - logZ, p = Foundation.exp(lp)
                mu += p * lp; second += p * lp * lp
            }
            let sigma = max(second - mu * mu, 1e-12).squareRoot()
            out.append((Double(row[row.startIndex + Int(tokens[t + 1])]) - logZ - mu) / sigma)
        }
        return out
    }

    // MARK: - Item texts

    /// The item as a model would have seen it in training data: the zero-shot question (with its
    /// lettered options under MCF) and the gold answer after the task's delimiter; a perplexity
    /// item's text. And its perturbed copy.
    public static func texts(_ task: EvalTask, item: EvalItem) -> (text: String, perturbed: String?, how: Perturbation) {
        let spec = task.spec
        let letters = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ").map(String.init)
        func mcf(_ choices: [String], gold: Int) -> String {
            var q = item.instruction + item.query
            for (i, c) in choices.enumerated() { q += "\n\(letters[i]). \(c.trimmingCharacters(in: .whitespaces))" }
            return q + "\nAnswer:" + spec.delimiter + letters[gold]
        }
        let text: String
        switch spec.kind {
        case .perplexity, .needle: text = item.text
        case .generative: text = item.instruction + item.query + spec.delimiter + (item.answers.first ?? "")
        case .multipleChoice:
            let gold = item.gold.first ?? 0
            if spec.formulation == .mcf && item.choices.count > 1 {
                let rotated = Array(item.choices[1...]) + [item.choices[0]]
                return (mcf(item.choices, gold: gold), mcf(rotated, gold: (gold + item.choices.count - 1) % item.choices.count), .choicesReordered)
            }
            text = item.instruction + item.query + spec.delimiter + (item.choices.indices.contains(gold) ? item.choices[gold] : "")
            if !text.contains(where: \.isNumber), item.choices.count > 1 {
                let other = item.choices[(gold + 1) % item.choices.count]
                return (text, item.instruction + item.query + spec.delimiter + other, .distractorAnswer)
            }
        }
        if text.unicodeScalars.contains(where: { ("0"..."9").contains($0) }) {
            let changed = String(String.UnicodeScalarView(text.unicodeScalars.map { s -> Unicode.Scalar in
                guard ("0"..."9").contains(s) else { return s }
                return Unicode.Scalar((s.value - 48 + 1) % 10 + 48)!
            }))
            return (text, changed, .digitsChanged)
        }
        return (text, nil, .none)
    }

    public func score(_ task: EvalTask) throws -> [ItemScore] {
        let items = options.limit.map { Array(task.items.prefix($0)) } ?? task.items
        let maxLen = model.config.maxPositionEmbeddings
        return try items.map { item in
            let (text, perturbed, how) = ContaminationAudit.texts(task, item: item)
            func encode(_ s: String) throws -> [Int32] {
                let ids = Array(model.tokenizer.encode(s).suffix(maxLen))
                guard ids.count >= 2 else { throw EvalError("\(task.path): item at line \(item.line) is under 2 tokens; Min-K%++ needs a text") }
                return ids
            }
            let ids = try encode(text)
            return ItemScore(line: item.line, minKpp: try minKPlusPlus(ids), perturbedMinKpp: try perturbed.map { try minKPlusPlus(try encode($0)) },
                             perturbation: how, tokens: ids.count)
        }
    }

    // MARK: - Per task

    public func audit(_ task: EvalTask, calibration: EvalTask?) throws -> TaskAudit {
        let items = try score(task)
        let calib = try calibration.map { try score($0) }
        return ContaminationAudit.summarise(task: task.spec.name, items: items, calibration: calib, options: options)
    }

    public static func summarise(task: String, items: [ItemScore], calibration: [ItemScore]?, options: Options) -> TaskAudit {
        let x = items.map(\.minKpp), gaps = items.compactMap(\.gap)
        var shift: Estimate?, gap: Estimate?, auc: Double?
        var rng = RandomStream(seed: options.seed, purpose: "contamination bootstrap")
        if let calibration, !calibration.isEmpty {
            let c = calibration.map(\.minKpp)
            shift = bootstrapDifference(x, c, resamples: options.resamples, rng: &rng)
            let cg = calibration.compactMap(\.gap)
            if !gaps.isEmpty && !cg.isEmpty { gap = bootstrapDifference(gaps, cg, resamples: options.resamples, rng: &rng) }
            var wins = 0.0
            for a in x { for b in c { wins += a > b ? 1 : (a == b ? 0.5 : 0) } }
            auc = wins / Double(x.count * c.count)
        } else if !gaps.isEmpty {
            gap = bootstrapDifference(gaps, nil, resamples: options.resamples, rng: &rng)
        }
        let neutral = items.allSatisfy { $0.perturbation.meaningNeutral }
        let verdict: Verdict, reason: String
        let shiftUp = shift?.excludesZeroAbove ?? false, gapUp = gap?.excludesZeroAbove ?? false
        if calibration != nil {
            if shiftUp && gapUp { verdict = .contaminated; reason = "Min-K%++ and the perturbation gap are both above the calibration items' (95% intervals exclude 0)" }
            else if shiftUp || gapUp { verdict = .suspect; reason = (shiftUp ? "Min-K%++" : "the perturbation gap") + " alone is above the calibration items'" }
            else { verdict = .noEvidence; reason = "neither signal is above the calibration items'" }
        } else if gap != nil && neutral {
            verdict = gapUp ? .contaminated : .noEvidence
            reason = gapUp ? "the items score above their meaning-neutral perturbed copies (95% interval excludes 0)" : "the items score no higher than their perturbed copies"
        } else {
            verdict = .noEvidence
            let n = items.filter { $0.perturbation.meaningNeutral }.count
            reason = "no calibration items (--calibration), and a meaning-neutral perturbation for \(n) of \(items.count) items only: the scores alone cannot tell memorisation from knowledge"
        }
        return TaskAudit(task: task, items: items, calibration: calibration, shift: shift, gap: gap, auc: auc, verdict: verdict, reason: reason)
    }

    /// mean(a) − mean(b) (or mean(a)), with a percentile bootstrap 95% interval (each sample resampled on its own).
    static func bootstrapDifference(_ a: [Double], _ b: [Double]?, resamples: Int, rng: inout RandomStream) -> Estimate {
        func mean(_ x: [Double]) -> Double { x.reduce(0, +) / Double(max(x.count, 1)) }
        let point = mean(a) - (b.map(mean) ?? 0)
        var draws: [Double] = []
        draws.reserveCapacity(resamples)
        for _ in 0..<resamples {
            var s = 0.0
            for _ in a.indices { s += a[rng.nextInt(below: a.count)] }
            var d = s / Double(a.count)
            if let b, !b.isEmpty {
                var t = 0.0
                for _ in b.indices { t += b[rng.nextInt(below: b.count)] }
                d -= t / Double(b.count)
            }
            draws.append(d)
        }
        draws.sort()
        let lo = draws[Int(0.025 * Double(resamples - 1))], hi = draws[Int((0.975 * Double(resamples - 1)).rounded(.up))]
        return Estimate(mean: point, low: lo, high: hi)
    }
}
