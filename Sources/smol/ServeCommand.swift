import ArgumentParser
import Foundation
import SmolWeights
import SmolHub
import SmolServe

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve a model over an OpenAI-compatible HTTP API (loopback by default).",
        discussion: """
        Endpoints: POST /v1/chat/completions (with "stream": true for server-sent events),
        POST /v1/completions, GET /v1/models, GET /health. Bad requests get a 4xx with OpenAI's
        JSON error body. Requests are served one at a time by one model; up to --max-queue more
        wait in line, and past that a request gets 503 at once. A client that disconnects stops
        its generation. With --api-key (or $SMOL_API_KEY) every route but /health needs
        `Authorization: Bearer KEY` (401 otherwise).

        Examples:
          smol serve SmolLM2-135M-Instruct.Q4_1.gguf --port 8080
          curl -s localhost:8080/v1/chat/completions -H 'Content-Type: application/json' \\
               -d '{"messages":[{"role":"user","content":"Hi"}]}'
        """)

    @Argument(help: "GGUF file, Hugging Face model directory, or checkpoint / run directory.") var model: String
    @Option(help: "Address to bind (127.0.0.1 keeps it on this machine).") var host = "127.0.0.1"
    @Option(help: "Port (0 picks a free one; the chosen port is printed).") var port = 8080
    @Option(help: "Name clients use in \"model\" (default: the file name).") var modelId: String?
    @Option(help: "Context window in tokens (default: the model's).") var contextLength: Int?
    @Option(help: "Largest max_tokens a request may ask for (more is a 400).") var maxTokensLimit = 2048
    @Option(help: "Requests that may wait behind the running one before new ones get 503.") var maxQueue = 8
    @Option(help: "Require 'Authorization: Bearer KEY' (default: $SMOL_API_KEY; none when unset).") var apiKey: String?

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be in 0...65535") }
        guard maxTokensLimit >= 1 else { throw ValidationError("--max-tokens-limit must be at least 1") }
        guard maxQueue >= 0 else { throw ValidationError("--max-queue must be at least 0") }
        if let c = contextLength, c < 2 { throw ValidationError("--context-length must be at least 2") }
        if apiKey?.isEmpty == true { throw ValidationError("--api-key must not be empty") }
    }

    func run() throws {
        try runReportingErrors {
            let pretrained = try PretrainedModel.load(model)
            let key = apiKey ?? ProcessInfo.processInfo.environment["SMOL_API_KEY"].flatMap { $0.isEmpty ? nil : $0 }
            let server = ModelServer(model: pretrained, modelID: modelId, contextLength: contextLength,
                                     limits: ServeLimits(maxTokens: maxTokensLimit, maxWaiting: maxQueue, apiKey: key))
            let host = self.host, port = self.port
            try serveUntilStopped(host: host, port: port) {
                try await server.run(host: host, port: port) { bound in
                    print("smol serve: \(server.modelID) on http://\(host):\(bound)/v1")
                    fflush(stdout)
                }
            }
        }
    }
}
