import Foundation
import SmolHub
import SmolWeights
import NIOCore

/// Set once, read from the generation thread: the request that owns it is gone.
public final class CancelFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var set = false
    public init() {}
    public func cancel() { lock.lock(); set = true; lock.unlock() }
    public var isCancelled: Bool { lock.lock(); defer { lock.unlock() }; return set }
}

/// Sets a request's flag when its client half-closes or drops the connection. The server allows
/// half-closure, so a client that goes away shows up first as `inputClosed`, not as a close;
/// this sits at the front of the pipeline while one request is served.
final class ClientGoneWatcher: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = NIOAny
    let cancel: CancelFlag
    init(_ cancel: CancelFlag) { self.cancel = cancel }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let e = event as? ChannelEvent, case .inputClosed = e { cancel.cancel() }
        context.fireUserInboundEventTriggered(event)
    }
    func channelInactive(context: ChannelHandlerContext) {
        cancel.cancel()
        context.fireChannelInactive()
    }
}

/// One model on its own thread, one generation at a time, so the server's event loops never block
/// on the model. Admission is bounded: at most `maxWaiting` requests wait behind the running one;
/// past that a request is refused at once (503) rather than queued without limit.
final class ServedModel: @unchecked Sendable {
    let pretrained: PretrainedModel
    let generator: Generator
    let maxWaiting: Int
    private let queue = DispatchQueue(label: "smol.serve.model")
    private let lock = NSLock()
    private var admitted = 0
    private var stopping = false

    init(_ pretrained: PretrainedModel, contextLength: Int?, maxWaiting: Int) {
        self.pretrained = pretrained
        self.maxWaiting = maxWaiting
        generator = Generator(pretrained, contextLength: contextLength)
    }

    /// A place in line, or nil when the line is full. Each admitted request calls `leave()` once.
    func admit() -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard admitted <= maxWaiting, !stopping else { return false }
        admitted += 1
        return true
    }

    func leave() { lock.lock(); admitted -= 1; lock.unlock() }

    /// The server is shutting down: running generations end at their next token and waiting
    /// ones never start, so a graceful shutdown doesn't wait for a long generation.
    func stopAll() { lock.lock(); stopping = true; lock.unlock() }
    private var isStopping: Bool { lock.lock(); defer { lock.unlock() }; return stopping }

    /// Requests running or waiting now.
    var load: Int { lock.lock(); defer { lock.unlock() }; return admitted }

    /// Generates for an admitted request. A request cancelled while it waits never starts.
    func generate(promptIds: [Int32], options: GenerationOptions, cancel: CancelFlag,
                  onText: @escaping @Sendable (String) -> Void = { _ in }) async throws -> GenerationResult {
        try await withCheckedThrowingContinuation { continuation in
            queue.async {
                do {
                    if cancel.isCancelled || self.isStopping { throw CancellationError() }
                    continuation.resume(returning: try self.generator.generate(promptIds: promptIds, options: options,
                                                                               isCancelled: { cancel.isCancelled || self.isStopping }, onText: onText))
                } catch { continuation.resume(throwing: error) }
            }
        }
    }
}
