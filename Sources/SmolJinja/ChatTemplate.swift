import Foundation

public struct ChatMessage: Sendable, Equatable {
    public var role: String
    public var content: String
    public init(role: String, content: String) { self.role = role; self.content = content }

    public var jinja: JinjaValue { .object(JinjaObject([("role", .string(role)), ("content", .string(content))])) }
}

/// A model's chat template with the variables Hugging Face passes to it: messages,
/// add_generation_prompt, bos_token, eos_token, and any extras (tools, enable_thinking, ...).
public struct ChatTemplate {
    public let source: String
    let template: JinjaTemplate
    public var bosToken: String?, eosToken: String?

    public init(_ source: String, bosToken: String? = nil, eosToken: String? = nil) throws {
        self.source = source
        template = try JinjaTemplate(source)
        self.bosToken = bosToken; self.eosToken = eosToken
    }

    public func render(messages: JinjaValue, addGenerationPrompt: Bool, extra: JinjaObject = JinjaObject()) throws -> JinjaTemplate.Output {
        var context = JinjaObject()
        context["messages"] = messages
        context["add_generation_prompt"] = .bool(addGenerationPrompt)
        if let b = bosToken { context["bos_token"] = .string(b) }
        if let e = eosToken { context["eos_token"] = .string(e) }
        for (k, v) in extra.pairs { context[k] = v }
        return try template.renderWithSpans(context)
    }

    public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool) throws -> String {
        try render(messages: .array(messages.map(\.jinja)), addGenerationPrompt: addGenerationPrompt).text
    }
}

