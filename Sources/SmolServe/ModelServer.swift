import Foundation
import SmolJinja
import SmolWeights
import Hummingbird
import Logging
import NIOCore
import SmolAPI
import SmolHub

/// A 4xx/5xx answer with OpenAI's JSON error body.
public struct APIError: HTTPResponseError {
    public var status: HTTPResponse.Status
    public var message: String
    public var type = "invalid_request_error"
    public var param: String?
    public var code: String?

    public init(_ status: HTTPResponse.Status, _ message: String, param: String? = nil, code: String? = nil, type: String = "invalid_request_error") {
        self.status = status; self.message = message; self.param = param; self.code = code; self.type = type
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        let body = APIErrorBody(error: .init(message: message, type: type, param: param, code: code))
        let e = JSONEncoder()
        e.outputFormatting = [.withoutEscapingSlashes]
        let data = try e.encode(body)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

/// Turns every error, including the router's own 404 and 405, into OpenAI's JSON error body.
struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let e as APIError {
            throw e
        } catch let e as HTTPError {
            let message = e.body ?? (e.status == .notFound ? "no route \(request.method) \(request.uri.path)" : e.status.reasonPhrase)
            throw APIError(e.status, message, code: e.status == .notFound ? "not_found" : nil)
        } catch {
            throw APIError(.internalServerError, "\(error)", type: "server_error")
        }
    }
}

/// One model behind a lock: generation runs on its own thread, one request at a time, so the
/// server's event loops never block on the model.
final class ServedModel: @unchecked Sendable {
    let pretrained: PretrainedModel
    let generator: Generator
    private let queue = DispatchQueue(label: "smol.serve.model")

    init(_ pretrained: PretrainedModel, contextLength: Int?) {
        self.pretrained = pretrained
        generator = Generator(pretrained, contextLength: contextLength)
    }

    func generate(promptIds: [Int32], options: GenerationOptions, onText: @escaping @Sendable (String) -> Void = { _ in }) async throws -> GenerationResult {
        try await withCheckedThrowingContinuation { continuation in
            queue.async {
                do { continuation.resume(returning: try self.generator.generate(promptIds: promptIds, options: options, onText: onText)) }
                catch { continuation.resume(throwing: error) }
            }
        }
    }
}

/// `smol serve`: an OpenAI-compatible HTTP server for one model.
public struct ModelServer {
    public let modelID: String
    let served: ServedModel
    public let maxBodyBytes = 4 << 20

    public init(model: PretrainedModel, modelID: String? = nil, contextLength: Int? = nil) {
        served = ServedModel(model, contextLength: contextLength)
        self.modelID = modelID ?? ((model.source as NSString).lastPathComponent as NSString).deletingPathExtension
    }

    var contextLength: Int { served.generator.session.capacity }

    /// Runs until SIGINT / SIGTERM. `onReady` gets the bound port (useful with port 0).
    public func run(host: String, port: Int, onReady: @escaping @Sendable (Int) -> Void) async throws {
        let app = Application(router: makeRouter(), configuration: .init(address: .hostname(host, port: port), serverName: "smol"),
                              onServerRunning: { channel in onReady(channel.localAddress?.port ?? port) },
                              logger: {
                                  var l = Logger(label: "smol.serve"); l.logLevel = .warning; return l
                              }())
        try await app.runService()
    }

    public func makeRouter() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: JSONErrorMiddleware())
        let created = Int(Date().timeIntervalSince1970)
        router.get("/v1/models") { _, _ -> Response in
            try json(ModelList(data: [.init(id: modelID, created: created)]))
        }
        router.get("/health") { _, _ -> Response in try json(["status": "ok"]) }
        router.post("/v1/chat/completions") { request, context -> Response in
            let body: ChatCompletionRequest = try await decode(request)
            return try await chatCompletion(body)
        }
        router.post("/v1/completions") { request, context -> Response in
            let body: CompletionRequest = try await decode(request)
            return try await completion(body)
        }
        return router
    }

    func decode<T: Decodable>(_ request: Request) async throws -> T {
        let buffer: ByteBuffer
        do { buffer = try await request.body.collect(upTo: maxBodyBytes) }
        catch { throw APIError(.contentTooLarge, "request body larger than \(maxBodyBytes) bytes") }
        do { return try JSONDecoder().decode(T.self, from: Data(buffer.readableBytesView)) }
        catch let e as DecodingError { throw APIError(.badRequest, "invalid request body: \(describeDecodingError(e))") }
        catch { throw APIError(.badRequest, "invalid request body: \(error)") }
    }

    func options(maxTokens: Int?, temperature: Double?, topP: Double?, n: Int?, stop: StopSequences?, seed: UInt64?, model: String?) throws -> GenerationOptions {
        if let m = model, !m.isEmpty, m != modelID {
            throw APIError(.notFound, "model '\(m)' is not served here (this server has '\(modelID)')", param: "model", code: "model_not_found")
        }
        var o = GenerationOptions()
        o.maxTokens = maxTokens ?? 256
        guard o.maxTokens >= 1 else { throw APIError(.badRequest, "max_tokens must be ≥ 1", param: "max_tokens") }
        let t = temperature ?? 1
        guard t >= 0, t <= 2, t.isFinite else { throw APIError(.badRequest, "temperature must be in [0, 2]", param: "temperature") }
        o.temperature = Float(t)
        let p = topP ?? 1
        guard p > 0, p <= 1 else { throw APIError(.badRequest, "top_p must be in (0, 1]", param: "top_p") }
        o.topP = Float(p)
        guard (n ?? 1) == 1 else { throw APIError(.badRequest, "only n = 1 is supported", param: "n") }
        o.stop = stop?.values ?? []
        guard o.stop.count <= 4, !o.stop.contains("") else { throw APIError(.badRequest, "stop: at most 4 non-empty strings", param: "stop") }
        o.seed = seed ?? 0
        return o
    }

    func promptIds(_ text: String, addSpecial: Bool, maxTokens: Int) throws -> [Int32] {
        let ids = served.pretrained.tokenizer.encode(text, addSpecialTokens: addSpecial)
        guard !ids.isEmpty else { throw APIError(.badRequest, "empty prompt", param: "prompt") }
        guard ids.count + 1 <= contextLength else {
            throw APIError(.badRequest, "prompt of \(ids.count) tokens does not fit the \(contextLength)-token context", code: "context_length_exceeded")
        }
        return ids
    }

    func chatCompletion(_ body: ChatCompletionRequest) async throws -> Response {
        var o = try options(maxTokens: body.maxCompletionTokens ?? body.maxTokens, temperature: body.temperature, topP: body.topP,
                            n: body.n, stop: body.stop, seed: body.seed, model: body.model)
        guard !body.messages.isEmpty else { throw APIError(.badRequest, "messages must not be empty", param: "messages") }
        for m in body.messages where !["system", "user", "assistant", "tool", "developer"].contains(m.role) {
            throw APIError(.badRequest, "unknown role '\(m.role)'", param: "messages")
        }
        let text: String
        do { text = try served.pretrained.renderChat(body.messages.map { ChatMessage(role: $0.role == "developer" ? "system" : $0.role, content: $0.content) }, addGenerationPrompt: true) }
        catch { throw APIError(.badRequest, "chat template: \(error)", param: "messages") }
        let ids = try promptIds(text, addSpecial: false, maxTokens: o.maxTokens)
        o.maxTokens = min(o.maxTokens, contextLength - ids.count)
        let id = "chatcmpl-" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        let created = Int(Date().timeIntervalSince1970)
        if body.stream == true {
            let model = modelID
            return streamEvents(promptIds: ids, options: o,
                                opening: [ChatCompletionChunk(id: id, created: created, model: model, choices: [.init(index: 0, delta: .init(role: "assistant", content: ""), finishReason: nil)])],
                                piece: { ChatCompletionChunk(id: id, created: created, model: model, choices: [.init(index: 0, delta: .init(content: $0), finishReason: nil)]) },
                                closing: { ChatCompletionChunk(id: id, created: created, model: model, choices: [.init(index: 0, delta: .init(), finishReason: $0)]) })
        }
        let r = try await served.generate(promptIds: ids, options: o)
        return try json(ChatCompletionResponse(id: id, created: created, model: modelID,
                                               choices: [.init(index: 0, message: .init(role: "assistant", content: r.text), finishReason: r.finishReason)],
                                               usage: Usage(promptTokens: ids.count, completionTokens: r.ids.count, totalTokens: ids.count + r.ids.count)))
    }

    func completion(_ body: CompletionRequest) async throws -> Response {
        var o = try options(maxTokens: body.maxTokens ?? 16, temperature: body.temperature, topP: body.topP, n: body.n,
                            stop: body.stop, seed: body.seed, model: body.model)
        let ids = try promptIds(body.prompt, addSpecial: true, maxTokens: o.maxTokens)
        o.maxTokens = min(o.maxTokens, contextLength - ids.count)
        let id = "cmpl-" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        let created = Int(Date().timeIntervalSince1970)
        if body.stream == true {
            let model = modelID
            return streamEvents(promptIds: ids, options: o, opening: [CompletionResponse](),
                                piece: { CompletionResponse(id: id, created: created, model: model, choices: [.init(index: 0, text: $0, finishReason: nil)]) },
                                closing: { CompletionResponse(id: id, created: created, model: model, choices: [.init(index: 0, text: "", finishReason: $0)]) })
        }
        let r = try await served.generate(promptIds: ids, options: o)
        return try json(CompletionResponse(id: id, created: created, model: modelID, choices: [.init(index: 0, text: r.text, finishReason: r.finishReason)],
                                           usage: Usage(promptTokens: ids.count, completionTokens: r.ids.count, totalTokens: ids.count + r.ids.count)))
    }
}

func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
    let e = JSONEncoder()
    e.outputFormatting = [.withoutEscapingSlashes]
    return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: try e.encode(value))))
}

extension ModelServer {
    /// Server-sent events for a streamed generation: the `opening` chunks, one chunk per piece of
    /// text as it is generated, a closing chunk with the finish reason, then `data: [DONE]`.
    func streamEvents<Chunk: Encodable & Sendable>(promptIds ids: [Int32], options: GenerationOptions, opening: [Chunk],
                                                   piece: @escaping @Sendable (String) -> Chunk,
                                                   closing: @escaping @Sendable (String) -> Chunk) -> Response {
        let (stream, feed) = AsyncStream<String>.makeStream()
        let served = self.served
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: ResponseBody { writer in
            func send(_ chunk: Chunk) async throws {
                try await writer.write(ByteBuffer(string: "data: " + String(decoding: try JSONEncoder().encode(chunk), as: UTF8.self) + "\n\n"))
            }
            for chunk in opening { try await send(chunk) }
            let task = Task { try await served.generate(promptIds: ids, options: options) { feed.yield($0) } }
            Task { _ = try? await task.value; feed.finish() }
            for await text in stream where !text.isEmpty { try await send(piece(text)) }
            try await send(closing(try await task.value.finishReason))
            try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
            try await writer.finish(nil)
        })
    }
}
