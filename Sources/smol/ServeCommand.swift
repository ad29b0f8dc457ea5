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
        JSON error body. Requests are served one at a time by one model.

        Examples:
          smol serve SmolLM2-135M-Instruct.Q4_1.gguf --port 8080
          curl -s localhost:8080/v1/chat/completions -d '{"messages":[{"role":"user","content":"Hi"}]}'
        """)

    @Argument(help: "GGUF file, Hugging Face model directory, or checkpoint / run directory.") var model: String
    @Option(help: "Address to bind (127.0.0.1 keeps it on this machine).") var host = "127.0.0.1"
    @Option(help: "Port (0 picks a free one; the chosen port is printed).") var port = 8080
    @Option(help: "Name clients use in \"model\" (default: the file name).") var modelId: String?
    @Option(help: "Context window in tokens (default: the model's).") var contextLength: Int?

    func run() throws {
        try runReportingErrors {
            guard (0...65535).contains(port) else { throw CLIError(message: "--port must be in 0...65535") }
            let pretrained = try PretrainedModel.load(model)
            let server = ModelServer(model: pretrained, modelID: modelId, contextLength: contextLength)
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
