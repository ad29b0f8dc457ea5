import Crypto
import Foundation
import SmolAPI
import SmolJinja

/// One question to judge: the question, the human-checked reference answer, the model's answer,
/// and for follow-up items a second turn.
public struct JudgeItem: Encodable, Sendable {
    public struct Turn: Codable, Sendable {
        public var question: String
        public var reference: String
        public var answer: String?
    }
    public var id: String
    public var task: String
    public var first: Turn
    public var followUp: Turn?

    enum CodingKeys: String, CodingKey { case id, task, question, reference, answer, followUp = "follow_up" }
    /// Written back in the layout it is read in.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id); try c.encode(task, forKey: .task)
        try c.encode(first.question, forKey: .question); try c.encode(first.reference, forKey: .reference)
        try c.encodeIfPresent(first.answer, forKey: .answer); try c.encodeIfPresent(followUp, forKey: .followUp)
    }

    /// Reads JSONL records {"id"?, "task"?, "question", "reference", "answer"?, "follow_up"?: {...}}.
    public static func load(_ path: String) throws -> [JudgeItem] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw EvalError("\(path): cannot read") }
        var items: [JudgeItem] = []
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let t = line.trimmingCharacters(in: .whitespaces)
            if t.isEmpty { continue }
            let at = "\(path):\(i + 1)"
            guard case .object(let o)? = try? JinjaJSON.parse(t) else { throw EvalError("\(at): not a JSON object") }
            func str(_ o: JinjaObject, _ k: String, required: Bool) throws -> String? {
                guard let v = o[k] else { if required { throw EvalError("\(at): missing key '\(k)'") }; return nil }
                switch v { case .string(let s): return s; case .int(let n) where k == "id": return String(n)
                default: throw EvalError("\(at): '\(k)' must be a string") }
            }
            func turn(_ o: JinjaObject) throws -> Turn {
                Turn(question: try str(o, "question", required: true)!, reference: try str(o, "reference", required: true)!,
                     answer: try str(o, "answer", required: false))
            }
            var follow: Turn? = nil
            if let f = o["follow_up"] {
                guard case .object(let fo) = f else { throw EvalError("\(at): 'follow_up' must be an object") }
                follow = try turn(fo)
            }
            let id = try str(o, "id", required: false) ?? String(i + 1)
            items.append(JudgeItem(id: id, task: try str(o, "task", required: false) ?? "default", first: try turn(o), followUp: follow))
        }
        guard !items.isEmpty else { throw EvalError("\(path): no items") }
        var seen = Set<String>()
        for it in items where !seen.insert(it.id).inserted { throw EvalError("\(path): id '\(it.id)' appears twice") }
        return items
    }
}

/// One judgement of one turn.
public struct Judgement: Codable, Sendable {
    public var id: String
    public var task: String
    public var turn: Int
    public var repeatIndex: Int
    public var reply: String
    public var cached: Bool
    public var scores: ThreeC3HScores?
    public var score: Double?
    public var parseError: String?
    enum CodingKeys: String, CodingKey { case id, task, turn, reply, cached, scores, score, repeatIndex = "repeat", parseError = "parse_error" }
}

/// Judge replies cached on disk by SHA-256 of (judge, prompt, repeat), so re-running a judgement
/// costs nothing and an interrupted run resumes. One JSON line per reply, appended and flushed.
public final class JudgeCache {
    public let path: String
    private var replies: [String: String] = [:]
    private var handle: FileHandle?
    public private(set) var hits = 0

    public init(path: String) throws {
        self.path = path
        let fm = FileManager.default
        try fm.createDirectory(atPath: (path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent,
                               withIntermediateDirectories: true)
        if let text = try? String(contentsOfFile: path, encoding: .utf8) {
            for line in text.split(separator: "\n") {
                // A line cut short by a crash is skipped; its reply is asked for again.
                guard let d = try? JSONDecoder().decode([String: String].self, from: Data(line.utf8)), let k = d["key"], let r = d["reply"] else { continue }
                replies[k] = r
            }
        } else {
            _ = fm.createFile(atPath: path, contents: nil)
        }
        guard let h = FileHandle(forWritingAtPath: path) else { throw EvalError("\(path): cannot open the judge cache for writing") }
        h.seekToEndOfFile()
        handle = h
    }

    public static func key(judge: String, messages: [ChatMessageBody], repeatIndex: Int) -> String {
        var h = SHA256()
        h.update(data: Data(judge.utf8)); h.update(data: Data([0]))
        for m in messages { h.update(data: Data(m.role.utf8)); h.update(data: Data([0])); h.update(data: Data(m.content.utf8)); h.update(data: Data([0])) }
        h.update(data: Data(String(repeatIndex).utf8))
        return hexString(h.finalize())
    }

    func lookup(_ key: String) -> String? {
        if let r = replies[key] { hits += 1; return r }
        return nil
    }

    func store(_ key: String, reply: String) throws {
        replies[key] = reply
        var data = try JSONEncoder().encode(["key": key, "reply": reply])
        data.append(0x0A)
        handle?.write(data)
        try handle?.synchronize()
    }
}

/// Scores items with the 3C3H judge: per item the mean of the six normalised dimensions (2:1
/// toward the first answer for follow-ups), per task and overall the mean with its standard error,
/// the unparseable replies counted apart, and with repeats the spread of the overall score.
public struct JudgeSummary: Codable, Sendable {
    public var judge: String
    public var items: Int
    public var repeats: Int
    public var scoredItems: Int
    public var unparseableReplies: Int
    public var totalReplies: Int
    public var cachedReplies: Int
    public var requestsSent: Int
    public var overall: MetricValue
    public var tasks: [String: MetricValue]
    /// Mean normalised value per dimension over scored turns (Correctness 0 zeroes the others).
    public var dimensions: [String: Double]
    /// Overall score of each repeat and their sample standard deviation (AraGen's stability figure).
    public var repeatScores: [Double]
    public var repeatStd: Double?
    enum CodingKeys: String, CodingKey {
        case judge, items, repeats, overall, tasks, dimensions
        case scoredItems = "scored_items", unparseableReplies = "unparseable_replies", totalReplies = "total_replies"
        case cachedReplies = "cached_replies", requestsSent = "requests_sent", repeatScores = "repeat_scores", repeatStd = "repeat_std"
    }
}

public enum JudgeRunner {
    public static func messages(_ item: JudgeItem, turn: Int) -> [ChatMessageBody] {
        let t = turn == 1 ? item.first : item.followUp!
        let previous = turn == 2 ? (item.first.question, item.first.answer ?? "") : nil
        return [ChatMessageBody(role: "system", content: JudgePrompt.system),
                ChatMessageBody(role: "user", content: JudgePrompt.user(question: t.question, reference: t.reference, answer: t.answer ?? "",
                                                                        previous: previous.map { (question: $0.0, answer: $0.1) }))]
    }

    public static func run(items: [JudgeItem], judge: ChatJudge, cache: JudgeCache, repeats: Int,
                           progress: (Int, Int) -> Void = { _, _ in }) throws -> ([Judgement], JudgeSummary) {
        var judgements: [Judgement] = []
        // per item: score of each repeat (nil when a reply was unparseable)
        var perItem = [[Double?]](repeating: [], count: items.count)
        let total = items.count * repeats
        var done = 0
        for r in 0..<repeats {
            for (i, item) in items.enumerated() {
                var turnScores: [ThreeC3HScores?] = []
                for turn in item.followUp == nil ? [1] : [1, 2] {
                    let msgs = messages(item, turn: turn)
                    let key = JudgeCache.key(judge: judge.identity, messages: msgs, repeatIndex: r)
                    var cached = true
                    var reply: String
                    if let hit = cache.lookup(key) { reply = hit } else {
                        cached = false
                        reply = try judge.complete(msgs)
                        try cache.store(key, reply: reply)
                    }
                    var j = Judgement(id: item.id, task: item.task, turn: turn, repeatIndex: r, reply: reply, cached: cached)
                    switch JudgeReplyParser.parse(reply) {
                    case .success(let parsed): j.scores = parsed.scores; j.score = parsed.scores.score; turnScores.append(parsed.scores)
                    case .failure(let f): j.parseError = f.reason; turnScores.append(nil)
                    }
                    judgements.append(j)
                }
                if turnScores.contains(where: { $0 == nil }) { perItem[i].append(nil) }
                else if turnScores.count == 2 { perItem[i].append(ThreeC3HScores.followUpScore(first: turnScores[0]!, second: turnScores[1]!)) }
                else { perItem[i].append(turnScores[0]!.score) }
                done += 1
                progress(done, total)
            }
        }
        // Item score: mean over its parsed repeats; items never parsed are left out (and counted).
        var itemScores: [Double] = [], itemTasks: [String] = []
        for (i, s) in perItem.enumerated() {
            let ok = s.compactMap { $0 }
            if !ok.isEmpty { itemScores.append(ok.reduce(0, +) / Double(ok.count)); itemTasks.append(items[i].task) }
        }
        var tasks: [String: MetricValue] = [:]
        for t in Set(itemTasks) {
            let v = zip(itemScores, itemTasks).filter { $0.1 == t }.map(\.0)
            tasks[t] = MetricValue(value: Statistics.mean(v), stderr: Statistics.standardError(v), stderrMethod: "mean")
        }
        var dims: [String: Double] = [:]
        let parsed = judgements.compactMap(\.scores)
        for (d, name) in ThreeC3HScores.dimensions.enumerated() where !parsed.isEmpty {
            dims[name] = parsed.map { $0.normalized[d] }.reduce(0, +) / Double(parsed.count)
        }
        let repeatScores: [Double] = (0..<repeats).map { r in
            let v = perItem.compactMap { $0[r] }
            return v.isEmpty ? .nan : Statistics.mean(v)
        }
        let summary = JudgeSummary(judge: judge.identity, items: items.count, repeats: repeats, scoredItems: itemScores.count,
                                   unparseableReplies: judgements.filter { $0.parseError != nil }.count, totalReplies: judgements.count,
                                   cachedReplies: judgements.filter(\.cached).count, requestsSent: judge.requestsSent,
                                   overall: MetricValue(value: itemScores.isEmpty ? .nan : Statistics.mean(itemScores),
                                                        stderr: Statistics.standardError(itemScores), stderrMethod: "mean"),
                                   tasks: tasks, dimensions: dims, repeatScores: repeatScores,
                                   repeatStd: repeatScores.filter { !$0.isNaN }.count > 1 ? Statistics.sampleStd(repeatScores.filter { !$0.isNaN }) : nil)
        return (judgements, summary)
    }

    /// Cohen's κ between two judges' verdicts on the same turns (first repeat), per dimension.
    public static func agreement(_ a: [Judgement], _ b: [Judgement]) -> (turns: Int, kappa: [String: Double]) {
        func index(_ js: [Judgement]) -> [String: ThreeC3HScores] {
            var out: [String: ThreeC3HScores] = [:]
            for j in js where j.repeatIndex == 0 { if let s = j.scores { out["\(j.id)#\(j.turn)"] = s } }
            return out
        }
        let ia = index(a), ib = index(b)
        let keys = ia.keys.filter { ib[$0] != nil }.sorted()
        var kappa: [String: Double] = [:]
        let paths: [(String, KeyPath<ThreeC3HScores, Int>)] = [("correctness", \.correctness), ("completeness", \.completeness),
                                                              ("conciseness", \.conciseness), ("helpfulness", \.helpfulness),
                                                              ("honesty", \.honesty), ("harmlessness", \.harmlessness)]
        for (name, p) in paths where !keys.isEmpty {
            kappa[name] = Statistics.cohensKappa(keys.map { ia[$0]![keyPath: p] }, keys.map { ib[$0]![keyPath: p] })
        }
        return (keys.count, kappa)
    }
}
