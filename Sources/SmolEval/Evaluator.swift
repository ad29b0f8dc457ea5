import Crypto
import Foundation
import SmolWeights
import SmolHub
import SmolTensor

/// One metric's aggregate with its standard error and how the error was computed.
public struct MetricValue: Codable, Sendable, Equatable {
    public var value: Double
    public var stderr: Double
    /// "mean" (s/√n) or "bootstrap (B)".
    public var stderrMethod: String
    enum CodingKeys: String, CodingKey { case value, stderr, stderrMethod = "stderr_method" }
}

/// What one item produced: the prompt, the model's scores or text, and per-item metric values.
public struct ItemDetail: Codable, Sendable {
    public var task: String
    public var line: Int
    public var context: String
    public var continuations: [String]?
    public var gold: [Int]?
    public var logLikelihoods: [Double]?
    public var unconditionedLogLikelihoods: [Double]?
    public var tokens: [Int]?
    public var greedy: [Bool]?
    public var answers: [String]?
    public var prediction: String?
    public var samples: [String]?
    /// Perplexity items: log-likelihood of the whole text, its words and UTF-8 bytes.
    public var words: Int?
    public var bytes: Int?
    /// Needle items: the context length asked for and the needle's depth in percent.
    public var needleLength: Int?
    public var needleDepth: Double?
    public var metrics: [String: Double]

    enum CodingKeys: String, CodingKey {
        case task, line, context, continuations, gold, tokens, greedy, answers, prediction, samples, words, bytes, metrics
        case needleLength = "needle_length", needleDepth = "needle_depth"
        case logLikelihoods = "loglikelihoods", unconditionedLogLikelihoods = "unconditioned_loglikelihoods"
    }
}

public struct TaskResult: Codable, Sendable {
    public var task: String
    public var version: Int
    public var kind: TaskKind
    public var items: Int
    public var itemsHash: String
    public var promptsHash: String
    public var metrics: [String: MetricValue]
    public var seconds: Double
    public var spec: TaskSpec
    /// Needle tasks: accuracy per (length, depth).
    public var needleGrid: [NeedleCell]?

    enum CodingKeys: String, CodingKey {
        case task, version, kind, items, metrics, seconds, spec, needleGrid = "needle_grid"
        case itemsHash = "items_hash", promptsHash = "prompts_hash"
    }
}

public struct EvalOptions: Sendable {
    public var batchSize = 16
    public var contextLength: Int? = nil
    /// Score only the first N items of each task.
    public var limit: Int? = nil
    public var bootstrapResamples = 1000
    public var seed: UInt64 = 1234
    /// Input format of the model's GEMMs (projections and head) while scoring and prefilling:
    /// bf16 rounds their inputs as `--prefill-precision bf16` does. Resolve it first
    /// (`MatmulPrecision.resolve`): on a CPU without the bf16 kernels it runs as fp32.
    public var precision: MatmulPrecision = .fp32
    public init() {}
}

/// Runs tasks on a model: prompts, scoring or generation, per-item metrics, aggregates with
/// standard errors.
public final class Evaluator {
    public let model: PretrainedModel
    public let options: EvalOptions
    public let scorer: LoglikelihoodScorer
    /// PMI's ll(choice | unconditioned prompt), kept apart so the main scorer's cached prefix survives.
    var unconditionedScorer: LoglikelihoodScorer {
        if let s = unconditionedStore { return s }
        let s = LoglikelihoodScorer(model: model, batchSize: options.batchSize, contextLength: options.contextLength,
                                    precision: options.precision)
        unconditionedStore = s
        return s
    }
    private var unconditionedStore: LoglikelihoodScorer?
    lazy var generator = Generator(model, contextLength: options.contextLength ?? min(model.config.maxPositionEmbeddings, 2048),
                                   prefillPrecision: options.precision)

    /// Where notices go (a clamped max_tokens); standard error by default.
    public var warn: (String) -> Void = { FileHandle.standardError.write(Data(("warning: " + $0 + "\n").utf8)) }
    private var warnedClamp = Set<String>()

    public init(model: PretrainedModel, options: EvalOptions = EvalOptions()) {
        self.model = model
        self.options = options
        scorer = LoglikelihoodScorer(model: model, batchSize: options.batchSize, contextLength: options.contextLength,
                                    precision: options.precision)
    }

    public func run(_ task: EvalTask, progress: (Int, Int) -> Void = { _, _ in }) throws -> (TaskResult, [ItemDetail]) {
        let t0 = Date()
        let spec = task.spec
        // Each task starts from an empty prefix cache: its scores do not depend on the tasks before it.
        scorer.resetCache(); unconditionedStore?.resetCache()
        let count = min(task.items.count, options.limit ?? Int.max)
        let builder = PromptBuilder(task: task)
        var details: [ItemDetail] = []
        var promptHasher = SHA256()
        // Token counts (as joined, after a space) of the sentences the longest context can use:
        // a prompt never reads past them, so the rest of a large haystack is never tokenised.
        var haystack: [String] = [], sentenceTokens: [Int] = [], total = 0
        for s in task.haystack ?? [] {
            if total > spec.lengths.max() ?? 0 { break }
            let n = model.tokenizer.encode(" " + s, addSpecialTokens: false).count
            haystack.append(s); sentenceTokens.append(n); total += n
        }
        for i in 0..<count {
            let prompt: Prompt
            if spec.kind == .needle {
                do {
                    prompt = Prompt(context: try NeedleHaystack.prompt(task.items[i], haystack: haystack, sentenceTokens: sentenceTokens,
                                                                       tokenizer: model.tokenizer), continuations: [])
                } catch let e as EvalError { throw EvalError("\(task.path): \(e.description)") }
            } else {
                prompt = try builder.prompt(for: i, model: model)
            }
            promptHasher.update(data: Data((prompt.context + "\u{1F}" + prompt.continuations.joined(separator: "\u{1E}") + "\u{1D}").utf8))
            let item = task.items[i]
            var d = ItemDetail(task: spec.name, line: item.line, context: prompt.context, metrics: [:])
            switch spec.kind {
            case .multipleChoice: try scoreChoices(task, item: item, prompt: prompt, into: &d)
            case .generative: try generate(task, item: item, index: i, prompt: prompt, into: &d)
            case .perplexity: try scoreText(item: item, into: &d)
            case .needle: try findNeedle(task, item: item, prompt: prompt, into: &d)
            }
            details.append(d)
            progress(i + 1, count)
        }
        let metrics = aggregate(spec, details)
        var result = TaskResult(task: spec.name, version: spec.version, kind: spec.kind, items: count, itemsHash: task.itemsHash,
                                promptsHash: hexString(promptHasher.finalize()),
                                metrics: metrics, seconds: Date().timeIntervalSince(t0), spec: spec)
        if spec.kind == .needle { result.needleGrid = NeedleCell.grid(details) }
        return (result, details)
    }

    private var addSpecial: (TaskSpec) -> Bool { { !$0.chatTemplate } }

    func scoreChoices(_ task: EvalTask, item: EvalItem, prompt: Prompt, into d: inout ItemDetail) throws {
        let spec = task.spec
        let pairs = prompt.continuations.map { scorer.encode(context: prompt.context, continuation: $0, addSpecialTokens: addSpecial(spec)) }
        // All choices share the context; lm-eval's split may move trailing spaces, so group by it.
        var scores = [ContinuationScore?](repeating: nil, count: pairs.count)
        var groups: [[Int32]: [Int]] = [:], order: [[Int32]] = []
        for (i, p) in pairs.enumerated() {
            if groups[p.context] == nil { order.append(p.context) }
            groups[p.context, default: []].append(i)
        }
        for ctx in order {
            let members = groups[ctx]!
            let s = try scorer.score(context: ctx, continuations: members.map { pairs[$0].continuation })
            for (j, i) in members.enumerated() { scores[i] = s[j] }
        }
        let ll = scores.map { $0!.logLikelihood }
        d.continuations = prompt.continuations
        d.gold = item.gold
        d.logLikelihoods = ll
        d.tokens = scores.map { $0!.tokens }
        d.greedy = scores.map { $0!.isGreedy }
        let metrics = spec.resolvedMetrics
        let shown = PromptBuilder(task: task).answers(item)
        func hit(_ values: [Double]) -> Double { item.gold.contains(argmax(values)) ? 1 : 0 }
        if metrics.contains("acc") { d.metrics["acc"] = hit(ll) }
        // Normalised by code points, as lm-evaluation-harness's len(): Swift's count (grapheme
        // clusters) differs on Arabic with diacritics.
        if metrics.contains("acc_norm") { d.metrics["acc_norm"] = hit(zip(ll, shown).map { $0 / Double(max(1, $1.unicodeScalars.count)) }) }
        if metrics.contains("acc_norm_tokens") { d.metrics["acc_norm_tokens"] = hit(zip(ll, d.tokens!).map { $0 / Double(max(1, $1)) }) }
        if metrics.contains("acc_norm_bytes") { d.metrics["acc_norm_bytes"] = hit(zip(ll, shown).map { $0 / Double(max(1, $1.utf8.count)) }) }
        if metrics.contains("acc_pmi") {
            let unconditioned = prompt.continuations.map { scorer.encode(context: spec.unconditionedPrompt, continuation: $0, addSpecialTokens: addSpecial(spec)) }
            var u: [Double] = []
            for p in unconditioned { u.append(try unconditionedScorer.score(context: p.context, continuations: [p.continuation])[0].logLikelihood) }
            d.unconditionedLogLikelihoods = u
            d.metrics["acc_pmi"] = hit(zip(ll, u).map { $0 - $1 })
        }
    }

    func generate(_ task: EvalTask, item: EvalItem, index: Int, prompt: Prompt, into d: inout ItemDetail) throws {
        let spec = task.spec
        let ids = model.tokenizer.encode(prompt.context, addSpecialTokens: addSpecial(spec))
        var o = GenerationOptions()
        // max_tokens at or past the context leaves no room for the prompt: keep the last token of it at least.
        let capacity = generator.session.capacity
        o.maxTokens = min(spec.maxTokens, capacity - 1); o.temperature = 0; o.stop = spec.stop
        if o.maxTokens < spec.maxTokens && !warnedClamp.contains(task.spec.name) {
            warnedClamp.insert(task.spec.name)
            warn("\(task.path): max_tokens \(spec.maxTokens) reaches the \(capacity)-token context; generating at most \(o.maxTokens)")
        }
        let keep = capacity - o.maxTokens
        let greedy = try generator.generate(promptIds: Array(ids.suffix(keep)), options: o)
        let norm = AnswerNormalizer(arabic: spec.arabic)
        let prediction = greedy.text
        d.answers = item.answers
        d.prediction = prediction
        let metrics = spec.resolvedMetrics
        if metrics.contains("em") {
            d.metrics["em"] = item.answers.contains { $0.trimmingCharacters(in: .whitespacesAndNewlines) == prediction.trimmingCharacters(in: .whitespacesAndNewlines) } ? 1 : 0
        }
        if metrics.contains("qem") { d.metrics["qem"] = item.answers.contains { norm.normalize($0) == norm.normalize(prediction) } ? 1 : 0 }
        if metrics.contains("f1") { d.metrics["f1"] = item.answers.map { norm.f1(prediction: prediction, reference: $0) }.max() ?? 0 }
        if metrics.contains("maj_at_k") {
            var samples: [String] = []
            for s in 0..<spec.samples {
                o.temperature = spec.temperature
                o.seed = options.seed &+ UInt64(item.line) &* 1_000_003 &+ UInt64(s)
                samples.append(try generator.generate(promptIds: Array(ids.suffix(keep)), options: o).text)
            }
            d.samples = samples
            let voted = Evaluator.majority(samples.map(norm.normalize))
            d.metrics["maj_at_k"] = item.answers.contains { norm.normalize($0) == voted } ? 1 : 0
        }
    }

    /// Greedy answer to a needle prompt; right when the value appears in it (RULER's string match).
    func findNeedle(_ task: EvalTask, item: EvalItem, prompt: Prompt, into d: inout ItemDetail) throws {
        let ids = model.tokenizer.encode(prompt.context, addSpecialTokens: true)
        let capacity = generator.session.capacity
        guard ids.count + task.spec.maxTokens <= capacity else {
            throw EvalError("\(task.path): lengths: a \(item.needleLength)-token context and \(task.spec.maxTokens) answer tokens do not fit the \(capacity)-token window (--context-length, or the model's max_position_embeddings)")
        }
        var o = GenerationOptions()
        o.maxTokens = task.spec.maxTokens; o.temperature = 0; o.stop = task.spec.stop
        let prediction = try generator.generate(promptIds: ids, options: o).text
        d.answers = item.answers
        d.prediction = prediction
        d.tokens = [ids.count]
        d.needleLength = item.needleLength
        d.needleDepth = item.needleDepth
        d.metrics["acc"] = prediction.contains(item.answers[0]) ? 1 : 0
    }

    /// The most frequent answer; ties go to the one seen first (Python's Counter.most_common).
    static func majority(_ answers: [String]) -> String {
        var counts: [String: Int] = [:]
        for a in answers { counts[a, default: 0] += 1 }
        var best = "", bestCount = 0
        for a in answers where counts[a]! > bestCount { best = a; bestCount = counts[a]! }
        return best
    }

    func scoreText(item: EvalItem, into d: inout ItemDetail) throws {
        let ids = model.tokenizer.encode(item.text, addSpecialTokens: false)
        let ll = try scorer.scoreText(ids)
        d.logLikelihoods = [ll]
        d.tokens = [ids.count]
        d.words = item.text.split(whereSeparator: { $0.isWhitespace }).count
        d.bytes = item.text.utf8.count
    }

    func aggregate(_ spec: TaskSpec, _ details: [ItemDetail]) -> [String: MetricValue] {
        var out: [String: MetricValue] = [:]
        if spec.kind == .perplexity {
            let ll = details.map { $0.logLikelihoods![0] }, words = details.map { Double($0.words!) }, bytes = details.map { Double($0.bytes!) }
            // Ratios of sums over documents: their error bars come from the bootstrap.
            let stats: [String: ([Int]) -> Double] = [
                "word_perplexity": { idx in exp(-idx.reduce(0) { $0 + ll[$1] } / idx.reduce(0) { $0 + words[$1] }) },
                "byte_perplexity": { idx in exp(-idx.reduce(0) { $0 + ll[$1] } / idx.reduce(0) { $0 + bytes[$1] }) },
                "bits_per_byte": { idx in -idx.reduce(0) { $0 + ll[$1] } / (idx.reduce(0) { $0 + bytes[$1] } * log(2)) },
            ]
            for m in spec.resolvedMetrics {
                let f = stats[m]!
                out[m] = MetricValue(value: f(Array(details.indices)),
                                     stderr: Statistics.bootstrapStandardError(count: details.count, resamples: options.bootstrapResamples, seed: options.seed, statistic: f),
                                     stderrMethod: "bootstrap (\(options.bootstrapResamples))")
            }
            return out
        }
        for m in spec.resolvedMetrics {
            let values = details.map { $0.metrics[m] ?? 0 }
            out[m] = MetricValue(value: Statistics.mean(values), stderr: Statistics.standardError(values), stderrMethod: "mean")
        }
        return out
    }
}

/// Index of the first maximum (numpy's argmax).
func argmax(_ x: [Double]) -> Int {
    var best = 0
    for i in x.indices where x[i] > x[best] { best = i }
    return best
}

public func sha256Hex(_ data: Data) -> String { hexString(SHA256.hash(data: data)) }

/// Lower-case hex of a digest's bytes.
func hexString<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
    bytes.map { String(format: "%02x", $0) }.joined()
}
