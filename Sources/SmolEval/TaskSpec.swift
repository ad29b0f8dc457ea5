import Foundation
import SmolAPI
import SmolModel
import Yams
import SmolTrainer

public struct EvalError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// What kind of scoring a task needs.
public enum TaskKind: String, Codable, Sendable {
    /// Each choice scored as a continuation by log-likelihood.
    case multipleChoice = "multiple_choice"
    /// The model generates an answer, compared with reference answers.
    case generative
    /// Log-likelihood of plain texts: perplexities and bits per byte.
    case perplexity
    /// RULER's single needle in a haystack: `data` is the filler text; accuracy by length × depth.
    case needle
}

/// How multiple-choice items are put to the model (the playbook's cloze vs MCF).
public enum Formulation: String, Codable, Sendable {
    /// Scores each choice's text as the continuation of the query.
    case cloze
    /// Lists lettered options after the query and scores the letter.
    case mcf
}

/// Layout of the items file.
public enum ItemFormat: String, Codable, Sendable {
    /// {"query", "choices", "gold"} / {"query", "answers"} / {"text"}
    case smol
    /// lighteval's Doc: {"query", "choices", "gold_index", "instruction"?}; choices are used as
    /// continuations verbatim (they usually begin with a space).
    case lighteval
    /// Raw dataset records turned into items by lm-evaluation-harness's `doc_to_text`,
    /// `doc_to_choice` and `doc_to_target` (field names or Jinja templates).
    case lmEval = "lm-eval"
}

/// Arabic folding applied before exact-match comparison (../shared/reference/evaluation.md).
public struct ArabicNormalization: Codable, Sendable, Equatable {
    public var enabled = false
    public var foldTaMarbuta = false
    public var foldAlefMaqsura = false
    enum CodingKeys: String, CodingKey, CaseIterable { case enabled, foldTaMarbuta = "fold_ta_marbuta", foldAlefMaqsura = "fold_alef_maqsura" }
    public init(enabled: Bool = false, foldTaMarbuta: Bool = false, foldAlefMaqsura: Bool = false) {
        self.enabled = enabled; self.foldTaMarbuta = foldTaMarbuta; self.foldAlefMaqsura = foldAlefMaqsura
    }
    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.rawValue), section: "arabic")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        enabled = try c.decodeIfPresent(Bool.self, forKey: .enabled) ?? true
        foldTaMarbuta = try c.decodeIfPresent(Bool.self, forKey: .foldTaMarbuta) ?? false
        foldAlefMaqsura = try c.decodeIfPresent(Bool.self, forKey: .foldAlefMaqsura) ?? false
    }
}

/// A task file (YAML): where the items are, how prompts are built and which metrics are computed.
/// Keys follow lm-evaluation-harness where it has one (`num_fewshot`, `target_delimiter`,
/// `fewshot_delimiter`, `doc_to_text`, ...).
public struct TaskSpec: Codable, Sendable {
    public var name: String
    public var version = 1
    public var kind: TaskKind
    /// Items file (JSONL), relative to the task file.
    public var data: String
    public var format: ItemFormat = .smol
    public var formulation: Formulation = .cloze
    public var numFewshot = 0
    public var fewshotSeed: UInt64 = 1234
    /// Items to draw few-shot examples from; default: the task's own items, never the item itself.
    public var fewshotData: String?
    /// Between the query and the answer; lighteval-format choices carry their own space.
    public var targetDelimiter: String?
    public var fewshotDelimiter = "\n\n"
    /// Render the prompt as a user turn through the model's chat template.
    public var chatTemplate = false
    /// Text after which choices are scored for PMI: ll(choice | query) − ll(choice | this).
    public var unconditionedPrompt = "Answer:"
    public var metrics: [String]?
    public var stop: [String] = ["\n"]
    public var maxTokens = 64
    /// maj@k: answers sampled per item (with `temperature`) and voted on after normalisation.
    public var samples = 1
    public var temperature: Float = 0.7
    public var arabic = ArabicNormalization()
    public var docToText: String?
    public var docToChoice: DocToChoice?
    public var docToTarget: String?
    /// lm-eval's `description`: a template rendered per record and put before the few-shot examples.
    public var description: String?
    /// Needle tasks: context lengths in tokens, needle depths in percent, needles per cell.
    public var lengths: [Int] = [256, 512, 1024]
    public var depths: [Double] = [0, 25, 50, 75, 100]
    public var needlesPerCell = 4
    /// Needle tasks: digits of the hidden value (RULER's is 7; fewer make a task a small model can learn).
    public var valueDigits = 7

    /// lm-eval's doc_to_choice: a field name or template, or a list of templates.
    public enum DocToChoice: Codable, Sendable {
        case one(String), list([String])
        public init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let s = try? c.decode(String.self) { self = .one(s) } else { self = .list(try c.decode([String].self)) }
        }
        public func encode(to encoder: Encoder) throws {
            var c = encoder.singleValueContainer()
            switch self { case .one(let s): try c.encode(s); case .list(let l): try c.encode(l) }
        }
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, version, kind, data, format, formulation, metrics, stop, samples, temperature, arabic
        case numFewshot = "num_fewshot", fewshotSeed = "fewshot_seed", fewshotData = "fewshot_data"
        case targetDelimiter = "target_delimiter", fewshotDelimiter = "fewshot_delimiter", chatTemplate = "chat_template"
        case unconditionedPrompt = "unconditioned_prompt", maxTokens = "max_tokens"
        case docToText = "doc_to_text", docToChoice = "doc_to_choice", docToTarget = "doc_to_target", description
        case lengths, depths, needlesPerCell = "needles_per_cell", valueDigits = "value_digits"
    }

    public init(name: String, kind: TaskKind, data: String) { self.name = name; self.kind = kind; self.data = data }

    public init(from decoder: Decoder) throws {
        try rejectUnknownKeys(decoder, known: CodingKeys.allCases.map(\.rawValue), section: "task")
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        kind = try c.decode(TaskKind.self, forKey: .kind)
        data = try c.decode(String.self, forKey: .data)
        version = try c.decodeIfPresent(Int.self, forKey: .version) ?? 1
        format = try c.decodeIfPresent(ItemFormat.self, forKey: .format) ?? .smol
        formulation = try c.decodeIfPresent(Formulation.self, forKey: .formulation) ?? .cloze
        numFewshot = try c.decodeIfPresent(Int.self, forKey: .numFewshot) ?? 0
        fewshotSeed = try c.decodeIfPresent(UInt64.self, forKey: .fewshotSeed) ?? 1234
        fewshotData = try c.decodeIfPresent(String.self, forKey: .fewshotData)
        // Yams reads a quoted "" as null: a delimiter given but empty is the empty string.
        targetDelimiter = c.contains(.targetDelimiter) ? try c.decodeIfPresent(String.self, forKey: .targetDelimiter) ?? "" : nil
        fewshotDelimiter = c.contains(.fewshotDelimiter) ? try c.decodeIfPresent(String.self, forKey: .fewshotDelimiter) ?? "" : "\n\n"
        chatTemplate = try c.decodeIfPresent(Bool.self, forKey: .chatTemplate) ?? false
        unconditionedPrompt = try c.decodeIfPresent(String.self, forKey: .unconditionedPrompt) ?? "Answer:"
        metrics = try c.decodeIfPresent([String].self, forKey: .metrics)
        stop = try c.decodeIfPresent([String].self, forKey: .stop) ?? ["\n"]
        maxTokens = try c.decodeIfPresent(Int.self, forKey: .maxTokens) ?? 64
        samples = try c.decodeIfPresent(Int.self, forKey: .samples) ?? 1
        temperature = try c.decodeIfPresent(Float.self, forKey: .temperature) ?? 0.7
        arabic = try c.decodeIfPresent(ArabicNormalization.self, forKey: .arabic) ?? ArabicNormalization()
        docToText = try c.decodeIfPresent(String.self, forKey: .docToText)
        docToChoice = try c.decodeIfPresent(DocToChoice.self, forKey: .docToChoice)
        docToTarget = try c.decodeIfPresent(String.self, forKey: .docToTarget)
        description = try c.decodeIfPresent(String.self, forKey: .description)
        lengths = try c.decodeIfPresent([Int].self, forKey: .lengths) ?? [256, 512, 1024]
        depths = try c.decodeIfPresent([Double].self, forKey: .depths) ?? [0, 25, 50, 75, 100]
        needlesPerCell = try c.decodeIfPresent(Int.self, forKey: .needlesPerCell) ?? 4
        valueDigits = try c.decodeIfPresent(Int.self, forKey: .valueDigits) ?? 7
    }

    /// The metrics computed when the task names none.
    public static func defaultMetrics(_ kind: TaskKind) -> [String] {
        switch kind {
        case .multipleChoice: return ["acc", "acc_norm", "acc_norm_tokens", "acc_norm_bytes", "acc_pmi"]
        case .generative: return ["em", "qem", "f1"]
        case .perplexity: return ["word_perplexity", "byte_perplexity", "bits_per_byte"]
        case .needle: return ["acc"]
        }
    }

    public static let knownMetrics: [TaskKind: Set<String>] = [
        .multipleChoice: ["acc", "acc_norm", "acc_norm_tokens", "acc_norm_bytes", "acc_pmi"],
        .generative: ["em", "qem", "f1", "maj_at_k"],
        .perplexity: ["word_perplexity", "byte_perplexity", "bits_per_byte"],
        .needle: ["acc"],
    ]

    public var resolvedMetrics: [String] { metrics ?? TaskSpec.defaultMetrics(kind) }
    public var delimiter: String { targetDelimiter ?? (format == .lighteval ? "" : " ") }

    func validate(file: String) throws {
        func bad(_ key: String, _ why: String) -> EvalError { EvalError("\(file): \(key): \(why)") }
        guard !name.isEmpty else { throw bad("name", "must not be empty") }
        guard numFewshot >= 0 else { throw bad("num_fewshot", "must be ≥ 0, got \(numFewshot)") }
        guard maxTokens > 0 else { throw bad("max_tokens", "must be > 0, got \(maxTokens)") }
        guard samples >= 1 else { throw bad("samples", "must be ≥ 1, got \(samples)") }
        guard temperature >= 0, temperature.isFinite else { throw bad("temperature", "must be ≥ 0") }
        let known = TaskSpec.knownMetrics[kind]!
        for m in resolvedMetrics where !known.contains(m) {
            throw bad("metrics", "unknown metric '\(m)' for a \(kind.rawValue) task (known: \(known.sorted().joined(separator: ", ")))")
        }
        if resolvedMetrics.contains("maj_at_k") && samples < 2 { throw bad("samples", "maj_at_k needs samples ≥ 2") }
        if kind == .needle {
            guard !lengths.isEmpty, lengths.allSatisfy({ (32...(1 << 20)).contains($0) }) else { throw bad("lengths", "give context lengths in 32...1048576 tokens") }
            guard !depths.isEmpty, depths.allSatisfy({ (0...100).contains($0) }) else { throw bad("depths", "give depths in percent, 0...100") }
            guard (1...10_000).contains(needlesPerCell) else { throw bad("needles_per_cell", "must be in 1...10000, got \(needlesPerCell)") }
            guard (1...18).contains(valueDigits) else { throw bad("value_digits", "must be in 1...18, got \(valueDigits)") }
        }
        if format == .lmEval && docToText == nil { throw bad("doc_to_text", "required with format lm-eval") }
        if format == .lmEval && kind == .multipleChoice && docToChoice == nil { throw bad("doc_to_choice", "required with format lm-eval") }
        if format == .lmEval && kind != .perplexity && docToTarget == nil { throw bad("doc_to_target", "required with format lm-eval") }
    }

    /// Reads a task file: smol's own layout, or an lm-evaluation-harness task YAML as it is.
    public static func load(_ path: String) throws -> TaskSpec {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw EvalError("\(path): cannot read task file") }
        do { try YAMLLimits.check(text, path: path) } catch { throw EvalError("\(error)") }
        if let root = (try? Yams.load(yaml: text)) as? [String: Any], LMEvalTaskFile.isLMEval(root) {
            let spec = try LMEvalTaskFile.spec(try LMEvalTaskFile.merged(root, text: text, path: path), path: path)
            try spec.validate(file: path)
            return spec
        }
        do {
            let spec = try YAMLDecoder().decode(TaskSpec.self, from: text)
            try spec.validate(file: path)
            return spec
        } catch let e as EvalError {
            throw e
        } catch let e as DecodingError {
            throw EvalError("\(path): \(describeDecodingError(e))")
        } catch {
            throw EvalError("\(path): \(error)")
        }
    }
}
