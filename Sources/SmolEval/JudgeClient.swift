import Foundation
import SmolJinja
import SmolWeights
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import SmolAPI
import SmolHub

/// Something that answers a chat: a remote OpenAI-compatible endpoint or a local model.
public protocol ChatJudge {
    /// Identifies the judge in cache keys and results (endpoint and model name).
    var identity: String { get }
    /// Requests actually sent (cache hits excluded).
    var requestsSent: Int { get }
    func complete(_ messages: [ChatMessageBody]) throws -> String
}

/// Any OpenAI-compatible chat-completions endpoint, at temperature 0. Transient failures (connection
/// errors, 408, 429, 5xx) are retried with exponential backoff; other HTTP errors stop the run
/// with the server's message.
public final class OpenAIChatJudge: ChatJudge {
    public let baseURL: URL
    public let model: String
    let apiKey: String?
    public let maxAttempts: Int
    public let timeout: TimeInterval
    public let initialBackoff: TimeInterval
    public private(set) var requestsSent = 0
    public private(set) var retries = 0

    public init(baseURL: String, model: String, apiKey: String?, maxAttempts: Int = 5, timeout: TimeInterval = 300, initialBackoff: TimeInterval = 0.5) throws {
        guard let url = URL(string: baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL), url.scheme == "http" || url.scheme == "https" else {
            throw EvalError("--base-url: '\(baseURL)' is not an http(s) URL")
        }
        self.baseURL = url; self.model = model; self.apiKey = apiKey
        self.maxAttempts = maxAttempts; self.timeout = timeout; self.initialBackoff = initialBackoff
    }

    public var identity: String { "\(baseURL.absoluteString)#\(model)" }

    public func complete(_ messages: [ChatMessageBody]) throws -> String {
        var body = ChatCompletionRequest(model: model, messages: messages, maxTokens: 1024, temperature: 0)
        body.stream = false
        var request = URLRequest(url: baseURL.appendingPathComponent("chat/completions"), timeoutInterval: timeout)
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        if let k = apiKey, !k.isEmpty { request.setValue("Bearer \(k)", forHTTPHeaderField: "Authorization") }
        request.httpBody = try JSONEncoder().encode(body)
        var lastProblem = ""
        for attempt in 0..<maxAttempts {
            if attempt > 0 {
                retries += 1
                Thread.sleep(forTimeInterval: initialBackoff * pow(2, Double(attempt - 1)))
            }
            requestsSent += 1
            let (data, response, error) = OpenAIChatJudge.send(request)
            if let error { lastProblem = "\(error.localizedDescription)"; continue }
            guard let http = response as? HTTPURLResponse, let data else { lastProblem = "no HTTP response"; continue }
            if http.statusCode == 408 || http.statusCode == 429 || http.statusCode >= 500 {
                lastProblem = "HTTP \(http.statusCode)"; continue
            }
            guard http.statusCode == 200 else {
                let message = (try? JSONDecoder().decode(APIErrorBody.self, from: data))?.error.message ?? String(decoding: data.prefix(300), as: UTF8.self)
                throw EvalError("\(baseURL.absoluteString): HTTP \(http.statusCode): \(message)")
            }
            do {
                let reply = try JSONDecoder().decode(ChatCompletionResponse.self, from: data)
                guard let text = reply.choices.first?.message.content else { throw EvalError("no choices") }
                return text
            } catch {
                throw EvalError("\(baseURL.absoluteString): not a chat completion: \(String(decoding: data.prefix(300), as: UTF8.self))")
            }
        }
        throw EvalError("\(baseURL.absoluteString): gave up after \(maxAttempts) attempts (\(lastProblem))")
    }

    static func send(_ request: URLRequest) -> (Data?, URLResponse?, Error?) {
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var result: (Data?, URLResponse?, Error?) = (nil, nil, nil)
        URLSession.shared.dataTask(with: request) { d, r, e in result = (d, r, e); done.signal() }.resume()
        done.wait()
        return result
    }
}

/// A local model as the judge, through our own engine (greedy, chat template).
public final class LocalChatJudge: ChatJudge {
    let generator: Generator
    public private(set) var requestsSent = 0
    public init(model: PretrainedModel) { generator = Generator(model) }
    public var identity: String { "local:\(generator.pretrained.source)" }

    public func complete(_ messages: [ChatMessageBody]) throws -> String {
        requestsSent += 1
        let text = try generator.pretrained.renderChat(messages.map { ChatMessage(role: $0.role, content: $0.content) }, addGenerationPrompt: true)
        var o = GenerationOptions()
        o.temperature = 0; o.maxTokens = 512
        return try generator.generate(promptIds: generator.pretrained.tokenizer.encode(text, addSpecialTokens: false), options: o).text
    }
}
