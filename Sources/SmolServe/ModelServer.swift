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

/// A request context that keeps the connection, so a handler learns when its client goes away.
public struct ServeRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let channel: any Channel
    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}

/// `Authorization: Bearer KEY` on every route but /health, compared in constant time.
struct APIKeyMiddleware<Context: RequestContext>: RouterMiddleware {
    let key: [UInt8]
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.uri.path == "/health" { return try await next(request, context) }
        let header = request.headers[.authorization] ?? ""
        let given = Array((header.hasPrefix("Bearer ") ? String(header.dropFirst(7)) : "").utf8)
        var diff = UInt8(given.count == key.count ? 0 : 1)
        for i in 0..<key.count { diff |= key[i] ^ (i < given.count ? given[i] : 0) }
        guard diff == 0 else {
            throw APIError(.unauthorized, header.isEmpty ? "missing API key: send 'Authorization: Bearer KEY'" : "incorrect API key",
                           code: "invalid_api_key")
        }
        return try await next(request, context)
    }
}

/// An admitted request: its place in line, its cancel flag, and the watcher on its connection.
struct Admission: Sendable {
    let cancel: CancelFlag
    let watcher: ClientGoneWatcher
    let connection: any Channel
    let served: ServedModel

    func done() {
        served.leave()
        connection.pipeline.removeHandler(watcher, promise: nil)   // a kept-alive connection serves more requests
    }
}

struct HealthBody: Encodable { var status: String; var running: Int; var waiting: Int }

/// What one server allows a request to ask for.
public struct ServeLimits: Sendable {
    /// Largest `max_tokens` a request may ask for; more is a 400 naming the limit.
    public var maxTokens = 2048
    /// Requests that may wait behind the running one; past that a request gets 503.
    public var maxWaiting = 8
    /// When set, every request but /health must carry `Authorization: Bearer <key>`.
    public var apiKey: String?
    public init(maxTokens: Int = 2048, maxWaiting: Int = 8, apiKey: String? = nil) {
        self.maxTokens = maxTokens; self.maxWaiting = maxWaiting; self.apiKey = apiKey
    }
}

/// `smol serve`: an OpenAI-compatible HTTP server for one model.
public struct ModelServer {
    public let modelID: String
    let served: ServedModel
    public let maxBodyBytes = 4 << 20

    public let limits: ServeLimits

    public init(model: PretrainedModel, modelID: String? = nil, contextLength: Int? = nil, limits: ServeLimits = .init()) {
        served = ServedModel(model, contextLength: contextLength, maxWaiting: limits.maxWaiting)
        self.limits = limits
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
        // Hummingbird shuts down gracefully on these signals, waiting for requests in flight;
        // ending the generations lets it finish in a moment.
        let served = self.served
        let watchers = [SIGTERM, SIGINT].map { sig in
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { served.stopAll() }
            source.resume()
            return source
        }
        defer { watchers.forEach { $0.cancel() } }
        try await app.runService()
    }

    public func makeRouter() -> Router<ServeRequestContext> {
        let router = Router(context: ServeRequestContext.self)
        router.add(middleware: JSONErrorMiddleware())
        if let key = limits.apiKey { router.add(middleware: APIKeyMiddleware(key: Array(key.utf8))) }
        let created = Int(Date().timeIntervalSince1970)
        router.get("/v1/models") { _, _ -> Response in
            try json(ModelList(data: [.init(id: modelID, created: created)]))
        }
        router.get("/health") { _, _ -> Response in
            let load = served.load   // requests generating (at most 1) and waiting for the model
            return try json(HealthBody(status: "ok", running: min(load, 1), waiting: max(load - 1, 0)))
        }
        router.post("/v1/chat/completions") { request, context -> Response in
            let body: ChatCompletionRequest = try await decode(request)
            return try await chatCompletion(body, connection: context.channel)
        }
        router.post("/v1/completions") { request, context -> Response in
            let body: CompletionRequest = try await decode(request)
            return try await completion(body, connection: context.channel)
        }
        return router
    }

    func decode<T: Decodable>(_ request: Request) async throws -> T {
        if let type = request.headers[.contentType],
           type.split(separator: ";").first?.trimmingCharacters(in: .whitespaces).lowercased() != "application/json" {
            throw APIError(.unsupportedMediaType, "Content-Type '\(type)' is not supported: send the body as application/json")
        }
        let buffer: ByteBuffer
        do { buffer = try await request.body.collect(upTo: maxBodyBytes) }
        catch { throw APIError(.contentTooLarge, "request body larger than \(maxBodyBytes) bytes") }
        do { return try JSONDecoder().decode(T.self, from: Data(buffer.readableBytesView)) }
        catch let DecodingError.dataCorrupted(ctx) where ctx.codingPath.isEmpty {
            // Numbers out of range are decoded with their key named (decodeIntegerIfPresent), so a
            // keyless corruption is the document itself.
            throw APIError(.badRequest, "request body is not valid JSON")
        } catch let e as DecodingError {
            throw APIError(.badRequest, "invalid request body: \(describeDecodingError(e))", param: decodingErrorKey(e))
        }
        catch { throw APIError(.badRequest, "invalid request body: \(error)") }
    }

    func options(maxTokens: Int?, temperature: Double?, topP: Double?, n: Int?, stop: StopSequences?, seed: UInt64?, model: String?) throws -> GenerationOptions {
        if let m = model, !m.isEmpty, m != modelID {
            throw APIError(.notFound, "model '\(m)' is not served here (this server has '\(modelID)')", param: "model", code: "model_not_found")
        }
        var o = GenerationOptions()
        o.maxTokens = maxTokens ?? min(256, limits.maxTokens)
        guard o.maxTokens >= 1 else { throw APIError(.badRequest, "max_tokens must be ≥ 1", param: "max_tokens") }
        guard o.maxTokens <= limits.maxTokens else {
            throw APIError(.badRequest, "max_tokens \(o.maxTokens) is over this server's limit of \(limits.maxTokens) (smol serve --max-tokens-limit)", param: "max_tokens")
        }
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

    /// A place in the model's line for this request (503 when the line is full), and the flag its
    /// client's leaving sets. The caller calls `done()` when generation ends.
    func admit(_ connection: any Channel) async throws -> Admission {
        guard served.admit() else {
            throw APIError(.serviceUnavailable, "server busy: \(served.maxWaiting) requests are already waiting for the model; retry later",
                           code: "server_busy", type: "server_error")
        }
        let cancel = CancelFlag()
        let watcher = ClientGoneWatcher(cancel)
        do { try await connection.pipeline.addHandler(watcher, position: .first).get() }
        catch { cancel.cancel() }   // the connection is already gone
        return Admission(cancel: cancel, watcher: watcher, connection: connection, served: served)
    }

    func chatCompletion(_ body: ChatCompletionRequest, connection: any Channel) async throws -> Response {
        if let k = body.topLogprobs {
            guard body.logprobs == true else { throw APIError(.badRequest, "top_logprobs needs logprobs: true", param: "top_logprobs") }
            guard (0...20).contains(k) else { throw APIError(.badRequest, "top_logprobs must be in 0...20", param: "top_logprobs") }
        }
        if body.logprobs == true && body.stream == true {
            throw APIError(.badRequest, "logprobs are not supported with stream: true by smol serve", param: "logprobs")
        }
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
        let admission = try await admit(connection), cancel = admission.cancel
        let id = "chatcmpl-" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        let created = Int(Date().timeIntervalSince1970)
        if body.stream == true {
            let model = modelID
            return streamEvents(promptIds: ids, options: o, admission: admission,
                                opening: [ChatCompletionChunk(id: id, created: created, model: model, choices: [.init(index: 0, delta: .init(role: "assistant", content: ""), finishReason: nil)])],
                                piece: { ChatCompletionChunk(id: id, created: created, model: model, choices: [.init(index: 0, delta: .init(content: $0), finishReason: nil)]) },
                                closing: { ChatCompletionChunk(id: id, created: created, model: model, choices: [.init(index: 0, delta: .init(), finishReason: $0)]) })
        }
        defer { admission.done() }
        if body.logprobs == true { o.logprobs = body.topLogprobs ?? 0 }
        let r = try await served.generate(promptIds: ids, options: o, cancel: cancel)
        let tok = served.pretrained.tokenizer
        func alternative(_ id: Int32, _ lp: Double) -> ChatLogprobs.Alternative {
            let b = tok.bytes(of: id)
            return .init(token: String(decoding: b, as: UTF8.self), logprob: lp, bytes: b)
        }
        let logprobs = body.logprobs == true ? ChatLogprobs(content: r.logprobs.map { t in
            let a = alternative(t.id, t.logprob)
            return .init(token: a.token, logprob: a.logprob, bytes: a.bytes, topLogprobs: t.top.map { alternative($0.id, $0.logprob) })
        }) : nil
        return try json(ChatCompletionResponse(id: id, created: created, model: modelID,
                                               choices: [.init(index: 0, message: .init(role: "assistant", content: r.text), finishReason: r.finishReason,
                                                               logprobs: logprobs)],
                                               usage: Usage(promptTokens: ids.count, completionTokens: r.ids.count, totalTokens: ids.count + r.ids.count)))
    }

    func completion(_ body: CompletionRequest, connection: any Channel) async throws -> Response {
        if let k = body.logprobs {
            guard (0...5).contains(k) else { throw APIError(.badRequest, "logprobs must be in 0...5", param: "logprobs") }
            if body.stream == true { throw APIError(.badRequest, "logprobs are not supported with stream: true by smol serve", param: "logprobs") }
        }
        if body.echo == true { throw APIError(.badRequest, "echo (prompt log-probabilities) is not supported by smol serve", param: "echo") }
        var o = try options(maxTokens: body.maxTokens ?? 16, temperature: body.temperature, topP: body.topP, n: body.n,
                            stop: body.stop, seed: body.seed, model: body.model)
        let ids = try promptIds(body.prompt, addSpecial: true, maxTokens: o.maxTokens)
        o.maxTokens = min(o.maxTokens, contextLength - ids.count)
        let admission = try await admit(connection), cancel = admission.cancel
        let id = "cmpl-" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        let created = Int(Date().timeIntervalSince1970)
        if body.stream == true {
            let model = modelID
            return streamEvents(promptIds: ids, options: o, admission: admission, opening: [CompletionResponse](),
                                piece: { CompletionResponse(id: id, created: created, model: model, choices: [.init(index: 0, text: $0, finishReason: nil)]) },
                                closing: { CompletionResponse(id: id, created: created, model: model, choices: [.init(index: 0, text: "", finishReason: $0)]) })
        }
        defer { admission.done() }
        o.logprobs = body.logprobs
        let r = try await served.generate(promptIds: ids, options: o, cancel: cancel)
        var logprobs: CompletionLogprobs?
        if body.logprobs != nil {
            let tok = served.pretrained.tokenizer
            func text(_ id: Int32) -> String { String(decoding: tok.bytes(of: id), as: UTF8.self) }
            var offsets: [Int] = [], offset = 0
            for t in r.logprobs { offsets.append(offset); offset += text(t.id).count }
            logprobs = CompletionLogprobs(tokens: r.logprobs.map { text($0.id) }, tokenLogprobs: r.logprobs.map(\.logprob),
                                          topLogprobs: r.logprobs.map { t in Dictionary(t.top.map { (text($0.id), $0.logprob) }, uniquingKeysWith: max) },
                                          textOffset: offsets)
        }
        return try json(CompletionResponse(id: id, created: created, model: modelID,
                                           choices: [.init(index: 0, text: r.text, finishReason: r.finishReason, logprobs: logprobs)],
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
    func streamEvents<Chunk: Encodable & Sendable>(promptIds ids: [Int32], options: GenerationOptions, admission: Admission, opening: [Chunk],
                                                   piece: @escaping @Sendable (String) -> Chunk,
                                                   closing: @escaping @Sendable (String) -> Chunk) -> Response {
        let (stream, feed) = AsyncStream<String>.makeStream()
        let served = self.served
        // The generation owns the request's place in line until it ends, whatever the writer does;
        // a failed write (the client went away) cancels it.
        let cancel = admission.cancel
        let task = Task {
            defer { admission.done() }
            return try await served.generate(promptIds: ids, options: options, cancel: cancel) { feed.yield($0) }
        }
        Task { _ = try? await task.value; feed.finish() }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: ResponseBody { writer in
            func send(_ chunk: Chunk) async throws {
                do { try await writer.write(ByteBuffer(string: "data: " + String(decoding: try JSONEncoder().encode(chunk), as: UTF8.self) + "\n\n")) }
                catch { cancel.cancel(); throw error }
            }
            for chunk in opening { try await send(chunk) }
            for await text in stream where !text.isEmpty { try await send(piece(text)) }
            try await send(closing(try await task.value.finishReason))
            try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
            try await writer.finish(nil)
        })
    }
}
