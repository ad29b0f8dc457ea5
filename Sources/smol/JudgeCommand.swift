import ArgumentParser
import Foundation
import SmolWeights
import SmolAPI
import SmolEval
import SmolHub
import SmolJinja

struct JudgeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "judge",
        abstract: "Score answers with the 3C3H judge rubric (AraGen), parse judge replies, measure judge agreement.",
        subcommands: [JudgeScore.self, JudgeParse.self, JudgeAgreement.self],
        defaultSubcommand: JudgeScore.self)
}

struct JudgeScore: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "score",
        abstract: "Judge each answer with the 3C3H rubric and report scores with standard errors.",
        discussion: """
        ITEMS is JSONL: {"id", "task", "question", "reference", "answer", "follow_up": {...}}. Items
        without an answer are answered first by --candidate (greedy, chat template). The judge is
        an OpenAI-compatible endpoint (--base-url, --judge-model, key from $OPENAI_API_KEY or
        --api-key-env) or a local model (--local-judge). Replies are cached by a hash of judge,
        prompt and repeat; unparseable replies are counted and reported, never scored.

        Examples:
          smol judge score answers.jsonl --base-url https://api.openai.com/v1 --judge-model gpt-4o
          smol judge score qa.jsonl --candidate runs/sft --base-url http://127.0.0.1:8080/v1 --judge-model judge --repeats 3
        """)

    @Argument(help: "Items to judge (JSONL).") var items: String
    @Option(help: "Base URL of an OpenAI-compatible API (…/v1).") var baseURL: String?
    @Option(help: "Model name the endpoint serves as judge.") var judgeModel: String?
    @Option(help: "Environment variable holding the API key.") var apiKeyEnv = "OPENAI_API_KEY"
    @Option(help: "Judge with a local model instead (GGUF, HF directory or checkpoint).") var localJudge: String?
    @Option(help: "Model that answers items lacking an answer.") var candidate: String?
    @Option(help: "Judgements per answer (AraGen used 3 to measure the judge's stability).") var repeats = 1
    @Option(help: "Attempts per request on transient errors.") var attempts = 5
    @Option(help: "Seconds before the first retry (doubling after).") var backoff: Double = 0.5
    @Option(help: "Output directory for judgements.jsonl and judge_results.json.") var output = "judge"
    @Option(help: "Judge reply cache.") var cache = ".smol/judge-cache.jsonl"
    @Flag(help: "Print the summary as JSON.") var json = false

    func run() throws {
        try runReportingErrors {
            guard repeats >= 1 else { throw CLIError(message: "--repeats must be ≥ 1") }
            guard attempts >= 1, backoff >= 0 else { throw CLIError(message: "--attempts must be ≥ 1 and --backoff ≥ 0") }
            var list = try JudgeItem.load(items)
            let judge: ChatJudge
            if let local = localJudge {
                judge = LocalChatJudge(model: try PretrainedModel.load(local))
            } else {
                guard let url = baseURL, let name = judgeModel else { throw CLIError(message: "give --base-url and --judge-model, or --local-judge") }
                judge = try OpenAIChatJudge(baseURL: url, model: name, apiKey: ProcessInfo.processInfo.environment[apiKeyEnv],
                                            maxAttempts: attempts, initialBackoff: backoff)
            }
            if list.contains(where: { $0.first.answer == nil || ($0.followUp != nil && $0.followUp!.answer == nil) }) {
                guard let c = candidate else { throw CLIError(message: "\(items): some items have no answer; give --candidate MODEL to answer them") }
                list = try JudgeScore.answer(list, with: try PretrainedModel.load(c))
            }
            let store = try JudgeCache(path: cache)
            let terminal = isatty(STDERR_FILENO) == 1
            let (judgements, summary) = try JudgeRunner.run(items: list, judge: judge, cache: store, repeats: repeats) { d, t in
                if terminal { FileHandle.standardError.write(Data("\rjudged \(d)/\(t)".utf8)) }
            }
            if terminal { FileHandle.standardError.write(Data("\n".utf8)) }
            try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
            let enc = EvalResults.encoder()
            try EvalResults.jsonLines(judgements).write(to: URL(fileURLWithPath: (output as NSString).appendingPathComponent("judgements.jsonl")), options: .atomic)
            try EvalResults.jsonLines(list).write(to: URL(fileURLWithPath: (output as NSString).appendingPathComponent("answers.jsonl")), options: .atomic)
            let summaryData = try enc.encode(summary)
            try summaryData.write(to: URL(fileURLWithPath: (output as NSString).appendingPathComponent("judge_results.json")), options: .atomic)
            if json { print(String(decoding: summaryData, as: UTF8.self)); return }
            if summary.scoredItems == 0 {
                print("3C3H: no item could be scored (every reply for each item was unparseable)")
            } else {
                print(String(format: "3C3H %.4f ± %.4f (95%% CI ± %.4f) over %d of %d items", summary.overall.value, summary.overall.stderr,
                             1.96 * summary.overall.stderr, summary.scoredItems, summary.items))
            }
            for (t, v) in summary.tasks.sorted(by: { $0.key < $1.key }) { print("  \(t): " + String(format: "%.4f ± %.4f", v.value, v.stderr)) }
            print("unparseable replies: \(summary.unparseableReplies) of \(summary.totalReplies); cached: \(summary.cachedReplies); requests sent: \(summary.requestsSent)")
            if let s = summary.repeatStd { print(String(format: "std over %d repeats: %.4f", summary.repeats, s)) }
            print("wrote \(output)/judgements.jsonl and \(output)/judge_results.json")
        }
    }

    /// Fills missing answers with the candidate's greedy replies (the follow-up sees the first turn).
    static func answer(_ items: [JudgeItem], with model: PretrainedModel) throws -> [JudgeItem] {
        let generator = Generator(model)
        var o = GenerationOptions()
        o.temperature = 0; o.maxTokens = 256
        func reply(_ messages: [ChatMessage]) throws -> String {
            let text = try model.renderChat(messages, addGenerationPrompt: true)
            return try generator.generate(promptIds: model.tokenizer.encode(text, addSpecialTokens: false), options: o).text
        }
        return try items.map { item in
            var it = item
            if it.first.answer == nil { it.first.answer = try reply([ChatMessage(role: "user", content: it.first.question)]) }
            if var f = it.followUp, f.answer == nil {
                f.answer = try reply([ChatMessage(role: "user", content: it.first.question), ChatMessage(role: "assistant", content: it.first.answer!),
                                      ChatMessage(role: "user", content: f.question)])
                it.followUp = f
            }
            return it
        }
    }
}

struct JudgeParse: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "parse",
        abstract: "Parse recorded judge replies (JSONL with a \"reply\" field) into 3C3H scores.",
        discussion: "Prints one JSON line per reply: the scores and item score, or the reason it cannot be scored.")

    @Argument(help: "JSONL file of {\"reply\": ...} records.") var replies: String

    func run() throws {
        try runReportingErrors {
            guard let text = try? String(contentsOfFile: replies, encoding: .utf8) else { throw CLIError(message: "\(replies): cannot read") }
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            for (i, line) in text.split(separator: "\n").enumerated() {
                guard case .object(let o)? = try? JinjaJSON.parse(String(line)), case .string(let reply)? = o["reply"] else {
                    throw CLIError(message: "\(replies):\(i + 1): expected {\"reply\": \"...\"}")
                }
                struct Out: Encodable { var scores: ThreeC3HScores?; var score: Double?; var reasoning: String?; var error: String? }
                let out: Out
                switch JudgeReplyParser.parse(reply) {
                case .success(let p): out = Out(scores: p.scores, score: p.scores.score, reasoning: p.reasoning)
                case .failure(let f): out = Out(error: f.reason)
                }
                print(String(decoding: try enc.encode(out), as: UTF8.self))
            }
        }
    }
}

struct JudgeAgreement: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agreement",
        abstract: "Cohen's κ per 3C3H dimension between two judges' runs on the same items.")

    @Argument(help: "judgements.jsonl of the first judge (or its output directory).") var first: String
    @Argument(help: "judgements.jsonl of the second judge (or its output directory).") var second: String

    func run() throws {
        try runReportingErrors {
            func load(_ p: String) throws -> [Judgement] {
                var path = p
                var isDir: ObjCBool = false
                if FileManager.default.fileExists(atPath: p, isDirectory: &isDir), isDir.boolValue { path = (p as NSString).appendingPathComponent("judgements.jsonl") }
                guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw CLIError(message: "\(path): cannot read") }
                return try text.split(separator: "\n").enumerated().map { i, line in
                    do { return try JSONDecoder().decode(Judgement.self, from: Data(line.utf8)) }
                    catch { throw CLIError(message: "\(path):\(i + 1): not a judgement record") }
                }
            }
            let (turns, kappa) = JudgeRunner.agreement(try load(first), try load(second))
            guard turns > 0 else { throw CLIError(message: "no scored turns in common") }
            struct Out: Encodable { var turns: Int; var kappa: [String: Double] }
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys, .prettyPrinted]
            enc.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
            print(String(decoding: try enc.encode(Out(turns: turns, kappa: kappa)), as: UTF8.self))
        }
    }
}
