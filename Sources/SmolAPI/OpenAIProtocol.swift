import Foundation

/// The subset of OpenAI's HTTP API that `smol serve` speaks and the judge client sends: chat
/// completions, completions and the model list. Field names are OpenAI's.

public struct ChatMessageBody: Codable, Sendable, Equatable {
    public var role: String
    public var content: String
    public init(role: String, content: String) { self.role = role; self.content = content }

    enum CodingKeys: String, CodingKey { case role, content }
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        role = try c.decode(String.self, forKey: .role)
        // content is a string, or a list of parts of which the text parts are joined
        if let s = try? c.decode(String.self, forKey: .content) { content = s; return }
        struct Part: Decodable { var type: String; var text: String? }
        guard let parts = try? c.decode([Part].self, forKey: .content) else {
            throw DecodingError.typeMismatch(String.self, .init(codingPath: c.codingPath + [CodingKeys.content],
                                                                 debugDescription: "expected a string or a list of {\"type\": \"text\", \"text\": ...} parts"))
        }
        guard parts.allSatisfy({ $0.type == "text" && $0.text != nil }) else {
            throw DecodingError.dataCorruptedError(forKey: .content, in: c, debugDescription: "only text content parts are supported")
        }
        content = parts.map { $0.text! }.joined()
    }
}

/// `stop`: one string or a list.
public struct StopSequences: Codable, Sendable {
    public var values: [String]
    public init(_ values: [String]) { self.values = values }
    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { values = [] } else if let s = try? c.decode(String.self) { values = [s] } else { values = try c.decode([String].self) }
    }
    public func encode(to encoder: Encoder) throws { var c = encoder.singleValueContainer(); try c.encode(values) }
}

public struct ChatCompletionRequest: Codable, Sendable {
    public var model: String?
    public var messages: [ChatMessageBody]
    public var maxTokens: Int?
    public var maxCompletionTokens: Int?
    public var temperature: Double?
    public var topP: Double?
    public var n: Int?
    public var stop: StopSequences?
    public var stream: Bool?
    public var seed: UInt64?
    public var logprobs: Bool?
    public var topLogprobs: Int?
    public init(model: String?, messages: [ChatMessageBody], maxTokens: Int? = nil, temperature: Double? = nil) {
        self.model = model; self.messages = messages; self.maxTokens = maxTokens; self.temperature = temperature
    }
    enum CodingKeys: String, CodingKey {
        case model, messages, temperature, n, stop, stream, seed, logprobs
        case maxTokens = "max_tokens", maxCompletionTokens = "max_completion_tokens", topP = "top_p", topLogprobs = "top_logprobs"
    }
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decodeIfPresent(String.self, forKey: .model)
        messages = try c.decode([ChatMessageBody].self, forKey: .messages)
        maxTokens = try c.decodeIntegerIfPresent(Int.self, forKey: .maxTokens)
        maxCompletionTokens = try c.decodeIntegerIfPresent(Int.self, forKey: .maxCompletionTokens)
        temperature = try c.decodeIfPresent(Double.self, forKey: .temperature)
        topP = try c.decodeIfPresent(Double.self, forKey: .topP)
        n = try c.decodeIntegerIfPresent(Int.self, forKey: .n)
        stop = try c.decodeIfPresent(StopSequences.self, forKey: .stop)
        stream = try c.decodeIfPresent(Bool.self, forKey: .stream)
        seed = try c.decodeIntegerIfPresent(UInt64.self, forKey: .seed)
        logprobs = try c.decodeIfPresent(Bool.self, forKey: .logprobs)
        topLogprobs = try c.decodeIntegerIfPresent(Int.self, forKey: .topLogprobs)
    }
}

public struct CompletionRequest: Codable, Sendable {
    public var model: String?
    public var prompt: String
    public var maxTokens: Int?
    public var temperature: Double?
    public var topP: Double?
    public var n: Int?
    public var stop: StopSequences?
    public var stream: Bool?
    public var seed: UInt64?
    public var logprobs: Int?
    public var echo: Bool?
    enum CodingKeys: String, CodingKey { case model, prompt, temperature, n, stop, stream, seed, logprobs, echo, maxTokens = "max_tokens", topP = "top_p" }
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decodeIfPresent(String.self, forKey: .model)
        prompt = try c.decode(String.self, forKey: .prompt)
        maxTokens = try c.decodeIntegerIfPresent(Int.self, forKey: .maxTokens)
        temperature = try c.decodeIfPresent(Double.self, forKey: .temperature)
        topP = try c.decodeIfPresent(Double.self, forKey: .topP)
        n = try c.decodeIntegerIfPresent(Int.self, forKey: .n)
        stop = try c.decodeIfPresent(StopSequences.self, forKey: .stop)
        stream = try c.decodeIfPresent(Bool.self, forKey: .stream)
        seed = try c.decodeIntegerIfPresent(UInt64.self, forKey: .seed)
        logprobs = try c.decodeIntegerIfPresent(Int.self, forKey: .logprobs)
        echo = try c.decodeIfPresent(Bool.self, forKey: .echo)
    }
}

public struct Usage: Codable, Sendable {
    public var promptTokens: Int
    public var completionTokens: Int
    public var totalTokens: Int
    public init(promptTokens: Int, completionTokens: Int, totalTokens: Int) {
        self.promptTokens = promptTokens; self.completionTokens = completionTokens; self.totalTokens = totalTokens
    }
    enum CodingKeys: String, CodingKey { case promptTokens = "prompt_tokens", completionTokens = "completion_tokens", totalTokens = "total_tokens" }
}

/// A chat choice's `logprobs`: {"content": [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}.
public struct ChatLogprobs: Codable, Sendable {
    public struct Alternative: Codable, Sendable {
        public var token: String
        public var logprob: Double
        public var bytes: [UInt8]
        public init(token: String, logprob: Double, bytes: [UInt8]) { self.token = token; self.logprob = logprob; self.bytes = bytes }
    }
    public struct Entry: Codable, Sendable {
        public var token: String
        public var logprob: Double
        public var bytes: [UInt8]
        public var topLogprobs: [Alternative]
        public init(token: String, logprob: Double, bytes: [UInt8], topLogprobs: [Alternative]) {
            self.token = token; self.logprob = logprob; self.bytes = bytes; self.topLogprobs = topLogprobs
        }
        enum CodingKeys: String, CodingKey { case token, logprob, bytes, topLogprobs = "top_logprobs" }
    }
    public var content: [Entry]
    public init(content: [Entry]) { self.content = content }
}

/// A completion choice's legacy `logprobs`: parallel lists, and per token a map of alternatives.
public struct CompletionLogprobs: Codable, Sendable {
    public var tokens: [String]
    public var tokenLogprobs: [Double]
    public var topLogprobs: [[String: Double]]
    public var textOffset: [Int]
    public init(tokens: [String], tokenLogprobs: [Double], topLogprobs: [[String: Double]], textOffset: [Int]) {
        self.tokens = tokens; self.tokenLogprobs = tokenLogprobs; self.topLogprobs = topLogprobs; self.textOffset = textOffset
    }
    enum CodingKeys: String, CodingKey { case tokens, tokenLogprobs = "token_logprobs", topLogprobs = "top_logprobs", textOffset = "text_offset" }
}

public struct ChatCompletionResponse: Codable, Sendable {
    public struct Choice: Codable, Sendable {
        public var index: Int
        public var message: ChatMessageBody
        public var finishReason: String
        public var logprobs: ChatLogprobs?
        public init(index: Int, message: ChatMessageBody, finishReason: String, logprobs: ChatLogprobs? = nil) {
            self.index = index; self.message = message; self.finishReason = finishReason; self.logprobs = logprobs
        }
        enum CodingKeys: String, CodingKey { case index, message, logprobs, finishReason = "finish_reason" }
    }
    public var id: String
    public var object = "chat.completion"
    public var created: Int
    public var model: String
    public var choices: [Choice]
    public var usage: Usage
    public init(id: String, created: Int, model: String, choices: [Choice], usage: Usage) {
        self.id = id; self.created = created; self.model = model; self.choices = choices; self.usage = usage
    }
}

public struct ChatCompletionChunk: Codable, Sendable {
    public struct Delta: Codable, Sendable {
        public var role: String?
        public var content: String?
        public init(role: String? = nil, content: String? = nil) { self.role = role; self.content = content }
    }
    public struct Choice: Codable, Sendable {
        public var index: Int
        public var delta: Delta
        public var finishReason: String?
        public init(index: Int, delta: Delta, finishReason: String?) { self.index = index; self.delta = delta; self.finishReason = finishReason }
        enum CodingKeys: String, CodingKey { case index, delta, finishReason = "finish_reason" }
        public func encode(to encoder: Encoder) throws {   // finish_reason is null until the last chunk, as OpenAI sends it
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(index, forKey: .index); try c.encode(delta, forKey: .delta); try c.encode(finishReason, forKey: .finishReason)
        }
    }
    public var id: String
    public var object = "chat.completion.chunk"
    public var created: Int
    public var model: String
    public var choices: [Choice]
    public init(id: String, created: Int, model: String, choices: [Choice]) { self.id = id; self.created = created; self.model = model; self.choices = choices }
}

public struct CompletionResponse: Codable, Sendable {
    public struct Choice: Codable, Sendable {
        public var index: Int
        public var text: String
        public var finishReason: String?
        public var logprobs: CompletionLogprobs?
        public init(index: Int, text: String, finishReason: String?, logprobs: CompletionLogprobs? = nil) {
            self.index = index; self.text = text; self.finishReason = finishReason; self.logprobs = logprobs
        }
        enum CodingKeys: String, CodingKey { case index, text, logprobs, finishReason = "finish_reason" }
        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(index, forKey: .index); try c.encode(text, forKey: .text); try c.encode(finishReason, forKey: .finishReason)
            try c.encode(logprobs, forKey: .logprobs)   // null when not asked, as OpenAI sends it
        }
    }
    public var id: String
    public var object = "text_completion"
    public var created: Int
    public var model: String
    public var choices: [Choice]
    public var usage: Usage?
    public init(id: String, created: Int, model: String, choices: [Choice], usage: Usage? = nil) {
        self.id = id; self.created = created; self.model = model; self.choices = choices; self.usage = usage
    }
}

public struct ModelList: Codable, Sendable {
    public struct Entry: Codable, Sendable {
        public var id: String
        public var object = "model"
        public var created: Int
        public var ownedBy = "smol"
        public init(id: String, created: Int) { self.id = id; self.created = created }
        enum CodingKeys: String, CodingKey { case id, object, created, ownedBy = "owned_by" }
    }
    public var object = "list"
    public var data: [Entry]
    public init(data: [Entry]) { self.data = data }
}

/// OpenAI's error body: {"error": {"message", "type", "param", "code"}}.
public struct APIErrorBody: Codable, Sendable {
    public struct Detail: Codable, Sendable {
        public var message: String
        public var type: String
        public var param: String?
        public var code: String?
        public init(message: String, type: String, param: String? = nil, code: String? = nil) {
            self.message = message; self.type = type; self.param = param; self.code = code
        }
    }
    public var error: Detail
    public init(error: Detail) { self.error = error }
}
