import Foundation
import SmolJinja

/// One evaluation item, whatever file format it came from.
public struct EvalItem: Sendable {
    /// Line number in the items file (1-based): the item's stable identity in details files.
    public var line: Int
    public var instruction = ""
    public var query = ""
    public var choices: [String] = []
    /// Correct choice indices (several when more than one answer is right).
    public var gold: [Int] = []
    /// Reference answers of generative items.
    public var answers: [String] = []
    /// Plain text of perplexity items.
    public var text = ""
    /// Needle items: the context length (tokens) and the needle's depth (percent).
    public var needleLength = 0
    public var needleDepth = 0.0
}

/// A task ready to run: its spec, items and few-shot pool.
public struct EvalTask {
    public let spec: TaskSpec
    public let path: String
    public let items: [EvalItem]
    /// Few-shot examples come from here (the task's own items unless `fewshot_data` names a file).
    public let fewshotPool: [EvalItem]
    public let poolIsItems: Bool
    /// SHA-256 of the items file's bytes, so results say exactly what was scored.
    public let itemsHash: String
    /// Needle tasks: the filler text's sentences.
    public var haystack: [String]? = nil

    /// `numFewshot` and `chatTemplate` override the task file's (lm-eval's `--num_fewshot` and
    /// `--apply_chat_template`).
    public static func load(_ path: String, numFewshot: Int? = nil, chatTemplate: Bool? = nil) throws -> EvalTask {
        var spec = try TaskSpec.load(path)
        if let n = numFewshot { spec.numFewshot = n }
        if let c = chatTemplate { spec.chatTemplate = c }
        let dir = (path as NSString).deletingLastPathComponent
        func resolve(_ p: String) -> String { p.hasPrefix("/") || dir.isEmpty ? p : (dir as NSString).appendingPathComponent(p) }
        let dataPath = resolve(spec.data)
        if spec.kind == .needle {   // the data file is the haystack; the items are drawn
            guard let data = FileManager.default.contents(atPath: dataPath), let text = String(data: data, encoding: .utf8) else {
                throw EvalError("\(dataPath): cannot read the haystack text")
            }
            let sentences = NeedleHaystack.sentences(text)
            guard !sentences.isEmpty else { throw EvalError("\(dataPath): the haystack has no sentences") }
            let items = NeedleHaystack.items(spec: spec)
            return EvalTask(spec: spec, path: path, items: items, fewshotPool: [], poolIsItems: false, itemsHash: sha256Hex(data), haystack: sentences)
        }
        let (items, hash) = try readItems(dataPath, spec: spec)
        guard !items.isEmpty else { throw EvalError("\(dataPath): no items") }
        var pool = items, poolIsItems = true
        if let f = spec.fewshotData {
            pool = try readItems(resolve(f), spec: spec).items; poolIsItems = false
        }
        if spec.numFewshot > 0 && pool.count - (poolIsItems ? 1 : 0) < spec.numFewshot {
            throw EvalError("\(path): num_fewshot: \(spec.numFewshot) examples asked for, the pool has \(pool.count)")
        }
        return EvalTask(spec: spec, path: path, items: items, fewshotPool: pool, poolIsItems: poolIsItems, itemsHash: hash)
    }

    /// Parses a JSONL items file in the spec's format; every problem names file and line.
    static func readItems(_ path: String, spec: TaskSpec) throws -> (items: [EvalItem], hash: String) {
        guard let data = FileManager.default.contents(atPath: path) else { throw EvalError("\(path): cannot read items file") }
        guard let text = String(data: data, encoding: .utf8) else { throw EvalError("\(path): not valid UTF-8") }
        let converter = try ItemConverter(spec: spec)
        var items: [EvalItem] = []
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if trimmed.isEmpty { continue }
            let where_ = "\(path):\(i + 1)"
            let value: JinjaValue
            do { value = try JinjaJSON.parse(String(trimmed)) } catch { throw EvalError("\(where_): malformed JSON: \(error)") }
            guard case .object(let doc) = value else { throw EvalError("\(where_): expected a JSON object") }
            do {
                var item = try converter.item(doc)
                item.line = i + 1
                // MCF letters its options A–Z (as lm-eval and lighteval do): more cannot be asked.
                if spec.kind == .multipleChoice && spec.formulation == .mcf && item.choices.count > 26 {
                    throw EvalError("\(item.choices.count) choices; the MCF formulation letters them A–Z (at most 26)")
                }
                items.append(item)
            } catch let e as EvalError {
                throw EvalError("\(where_): \(e.description)")
            }
        }
        return (items, sha256Hex(data))
    }
}

/// Turns one record of the items file into an EvalItem according to the task's format.
struct ItemConverter {
    let spec: TaskSpec
    let text: FieldOrTemplate?, target: FieldOrTemplate?, choice: [FieldOrTemplate]?, choiceList: Bool
    let description: JinjaTemplate?

    init(spec: TaskSpec) throws {
        self.spec = spec
        text = try spec.docToText.map(FieldOrTemplate.init)
        target = try spec.docToTarget.map(FieldOrTemplate.init)
        do { description = try spec.description.map { try JinjaTemplate($0, trimBlocks: false, lstripBlocks: false) } }
        catch { throw EvalError("description: \(error)") }
        switch spec.docToChoice {
        case .one(let s)?: choice = [try FieldOrTemplate(s)]; choiceList = false
        case .list(let l)?: choice = try l.map(FieldOrTemplate.init); choiceList = true
        case nil: choice = nil; choiceList = false
        }
    }

    func item(_ doc: JinjaObject) throws -> EvalItem {
        var item = EvalItem(line: 0)
        switch spec.format {
        case .smol, .lighteval:
            let goldKey = spec.format == .smol ? "gold" : "gold_index"
            item.instruction = try optionalString(doc, "instruction") ?? ""
            switch spec.kind {
            case .perplexity, .needle:   // needle items are drawn, never read; kept total for the compiler
                item.text = try string(doc, "text")
            case .multipleChoice:
                item.query = try string(doc, "query")
                item.choices = try strings(doc, "choices")
                item.gold = try indices(doc, goldKey, count: item.choices.count)
            case .generative:
                item.query = try string(doc, "query")
                if spec.format == .smol {
                    item.answers = try strings(doc, "answers")
                } else {   // lighteval: the gold choices are the reference answers
                    let choices = try strings(doc, "choices")
                    item.answers = try indices(doc, goldKey, count: choices.count).map { choices[$0] }
                }
            }
        case .lmEval:
            let value = JinjaValue.object(doc)
            // lm-eval scores doc_to_target's text in loglikelihood_rolling tasks.
            if spec.kind == .perplexity { item.text = try (target ?? text!).string(value); return item }
            if let description {
                do { item.instruction = try description.render(doc) } catch { throw EvalError("description: \(error)") }
            }
            item.query = try text!.string(value)
            let t = try target!.value(value)
            if spec.kind == .generative {
                if case .array(let a) = t { item.answers = a.map(\.printed) } else { item.answers = [t.printed] }
                return item
            }
            if choiceList {
                item.choices = try choice!.map { try $0.string(value) }
            } else {
                // A field gives a list; a template gives text that lm-eval reads with ast.literal_eval.
                switch try choice![0].value(value) {
                case .array(let list): item.choices = list.map(\.printed)
                case .string(let rendered): item.choices = try PythonListLiteral.strings(rendered)
                case let v: throw EvalError("doc_to_choice must give a list, got \(v.printed)")
                }
            }
            // The target is a choice index, or the text of the right choice.
            let asText = t.printed.trimmingCharacters(in: .whitespaces)
            if case .int(let i) = t, i >= 0, i < item.choices.count { item.gold = [i] }
            else if let i = Int(asText), i >= 0, i < item.choices.count { item.gold = [i] }
            else if let i = item.choices.firstIndex(of: t.printed) { item.gold = [i] }
            else { throw EvalError("doc_to_target gave '\(t.printed)', neither a choice index nor one of the choices") }
        }
        if spec.kind == .multipleChoice && item.choices.count < 2 { throw EvalError("an item needs at least 2 choices") }
        if spec.kind == .generative && item.answers.isEmpty { throw EvalError("an item needs at least one reference answer") }
        return item
    }

    func string(_ doc: JinjaObject, _ key: String) throws -> String {
        guard let v = doc[key] else { throw EvalError("missing key '\(key)'") }
        guard case .string(let s) = v else { throw EvalError("'\(key)' must be a string") }
        return s
    }
    func optionalString(_ doc: JinjaObject, _ key: String) throws -> String? {
        guard let v = doc[key] else { return nil }
        guard case .string(let s) = v else { throw EvalError("'\(key)' must be a string") }
        return s
    }
    func strings(_ doc: JinjaObject, _ key: String) throws -> [String] {
        guard let v = doc[key] else { throw EvalError("missing key '\(key)'") }
        guard case .array(let a) = v else { throw EvalError("'\(key)' must be a list of strings") }
        return try a.map { guard case .string(let s) = $0 else { throw EvalError("'\(key)' must be a list of strings") }; return s }
    }
    func indices(_ doc: JinjaObject, _ key: String, count: Int) throws -> [Int] {
        guard let v = doc[key] else { throw EvalError("missing key '\(key)'") }
        var out: [Int] = []
        switch v {
        case .int(let i): out = [i]
        case .array(let a): out = try a.map { guard case .int(let i) = $0 else { throw EvalError("'\(key)' must be an index or a list of indices") }; return i }
        default: throw EvalError("'\(key)' must be an index or a list of indices")
        }
        guard !out.isEmpty else { throw EvalError("'\(key)' is empty") }
        for i in out where i < 0 || i >= count { throw EvalError("'\(key)' \(i) is outside the \(count) choices") }
        return out
    }
}

/// lm-eval's convention: a bare field name (dots for nesting) reads the field; anything else is a
/// Jinja template rendered with the record's fields.
struct FieldOrTemplate {
    let field: [String]?
    let template: JinjaTemplate?

    init(_ source: String) throws {
        let isField = !source.isEmpty && source.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "." }
        if isField { field = source.split(separator: ".").map(String.init); template = nil }
        else {
            field = nil
            do { template = try JinjaTemplate(source, trimBlocks: false, lstripBlocks: false) }
            catch { throw EvalError("template '\(source)': \(error)") }
        }
    }

    func value(_ doc: JinjaValue) throws -> JinjaValue {
        if let field {
            var v = doc
            for k in field {
                guard case .object(let o) = v, let next = o[k] else { throw EvalError("missing field '\(field.joined(separator: "."))'") }
                v = next
            }
            return v
        }
        guard case .object(let o) = doc else { throw EvalError("record is not an object") }
        do { return .string(try template!.render(o)) } catch { throw EvalError("\(error)") }
    }

    func string(_ doc: JinjaValue) throws -> String { try value(doc).printed }
}
