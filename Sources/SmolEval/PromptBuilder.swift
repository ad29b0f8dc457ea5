import Foundation
import SmolJinja
import SmolWeights
import SmolHub
import SmolTensor

/// The text put to the model for one item: a context and, for multiple choice, the continuations
/// scored after it.
public struct Prompt: Sendable {
    public var context: String
    public var continuations: [String]
}

/// Builds prompts the way lm-evaluation-harness and lighteval do: few-shot examples (drawn once
/// per task with the task's seed, never the item itself), joined by `fewshot_delimiter`; the query;
/// the answer after `target_delimiter`. With `chat_template` the examples become user/assistant
/// turns and the query the last user turn, rendered by the model's template.
public struct PromptBuilder {
    public let task: EvalTask
    let letters = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ").map(String.init)

    public init(task: EvalTask) { self.task = task }

    /// The few-shot examples for item `index` (indices into the pool). The same draw for every
    /// item (so the shared prefix is computed once), except that an item never sees itself.
    public func fewshot(for index: Int) -> [Int] {
        let k = task.spec.numFewshot
        guard k > 0 else { return [] }
        var rng = RandomStream(seed: task.spec.fewshotSeed, purpose: "fewshot")
        var order = Array(task.fewshotPool.indices)
        for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, rng.nextInt(below: i + 1)) }
        let selfLine = task.poolIsItems ? task.items[index].line : -1
        return Array(order.filter { task.fewshotPool[$0].line != selfLine }.prefix(k))
    }

    /// The query as asked (with lettered options under MCF).
    func question(_ item: EvalItem) -> String {
        guard task.spec.kind == .multipleChoice, task.spec.formulation == .mcf else { return item.query }
        var q = item.query
        for (i, c) in item.choices.enumerated() { q += "\n\(letters[i]). \(c.trimmingCharacters(in: .whitespaces))" }
        return q + "\nAnswer:"
    }

    /// The answers as scored: the choice texts (cloze) or their letters (MCF).
    func answers(_ item: EvalItem) -> [String] {
        switch task.spec.kind {
        case .multipleChoice:
            return task.spec.formulation == .mcf ? item.choices.indices.map { letters[$0] } : item.choices
        case .generative: return [item.answers[0]]
        case .perplexity, .needle: return []
        }
    }

    func goldAnswer(_ item: EvalItem) -> String {
        let a = answers(item)
        return task.spec.kind == .multipleChoice ? a[item.gold[0]] : a[0]
    }

    public func prompt(for index: Int, model: PretrainedModel?) throws -> Prompt {
        let spec = task.spec, item = task.items[index]
        let shots = fewshot(for: index).map { task.fewshotPool[$0] }
        if spec.kind == .perplexity { return Prompt(context: "", continuations: [item.text]) }
        if spec.chatTemplate {
            guard let model else { throw EvalError("\(task.path): chat_template needs a model with a chat template") }
            var messages: [ChatMessage] = []
            if !item.instruction.isEmpty { messages.append(ChatMessage(role: "system", content: item.instruction)) }
            for s in shots {
                messages.append(ChatMessage(role: "user", content: question(s)))
                messages.append(ChatMessage(role: "assistant", content: goldAnswer(s).trimmingCharacters(in: .whitespaces)))
            }
            messages.append(ChatMessage(role: "user", content: question(item)))
            let context = try model.renderChat(messages, addGenerationPrompt: true)
            return Prompt(context: context, continuations: answers(item).map { $0.trimmingCharacters(in: .whitespaces) })
        }
        var parts = shots.map { question($0) + spec.delimiter + goldAnswer($0) }
        parts.append(question(item))
        let context = item.instruction + parts.joined(separator: spec.fewshotDelimiter)
        return Prompt(context: context, continuations: answers(item).map { spec.delimiter + $0 })
    }
}
