import ArgumentParser
import SmolHub
import SmolModel
import SmolTensor
import Foundation
import SmolFormats
import SmolModel
import SmolTrainer

/// Hooks for the test suite: they expose internals to independent reference implementations.
struct DevCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev", abstract: "Developer tools used by the tests.", shouldDisplay: false,
        subcommands: [Logits.self, Parity.self, GGUFInfo.self])

    /// Prints a GGUF file's scalar metadata and tensor infos as JSON (compared with the `gguf` package).
    struct GGUFInfo: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "gguf")
        @Argument var file: String
        @Option(help: "Also write every tensor decoded to float32 into this safetensors file (shape outermost first).")
        var dequantOut: String?

        func run() throws {
            try runReportingErrors {
                let g = try GGUFFile(path: file)
                if let out = dequantOut {
                    let decoded = try g.tensors.map { info in
                        let buffer = FloatBuffer(count: info.dimensions.reduce(1, *))
                        try g.floats(info, into: buffer.pointer)
                        return (info, buffer)
                    }
                    try SafetensorsWriter.write(decoded.map { info, buffer in
                        SafetensorsWriter.Tensor(name: info.name, shape: info.dimensions.reversed(), data: buffer.pointer)
                    }, to: out)
                    withExtendedLifetime(decoded) {}
                }
                var meta: [String: String] = [:]
                for (k, v) in g.metadata {
                    switch v {
                    case let .string(s): meta[k] = s
                    case let .uint(u): meta[k] = String(u)
                    case let .int(i): meta[k] = String(i)
                    case let .float(f): meta[k] = String(f)
                    case let .bool(b): meta[k] = String(b)
                    case let .array(a): meta[k] = "array[\(a.count)]"
                    }
                }
                struct T: Encodable { let name: String; let dims: [Int]; let type: UInt32; let offset: Int }
                struct Out: Encodable { let version: UInt32; let alignment: Int; let data_offset: Int; let metadata: [String: String]; let tensors: [T] }
                printJSON(Out(version: g.version, alignment: g.alignment, data_offset: g.dataOffset, metadata: meta,
                              tensors: g.tensors.map { T(name: $0.name, dims: $0.dimensions, type: $0.type, offset: $0.offset) }))
            }
        }
    }

    /// Reads a JSON spec (model config, seed, batch, optimizer, steps) and writes the initial
    /// weights, step-0 logits and gradients as safetensors, and the loss of each AdamW step.
    struct Parity: ParsableCommand {
        @Option var spec: String
        @Option var out: String

        struct Spec: Decodable {
            let model: LlamaConfig
            let seed: UInt64
            let batch: Int
            let seq_len: Int
            let tokens: [Int32]
            let targets: [Int32]
            let document_start: [Int32]?
            let optimizer: OptimizerConfig
            let lrs: [Double]
        }

        func run() throws {
            try runReportingErrors {
                guard let data = FileManager.default.contents(atPath: spec) else { throw CLIError(message: "\(spec): cannot read") }
                let s = try JSONDecoder().decode(Spec.self, from: data)
                try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
                let model = try LlamaModel(config: s.model)
                model.parameters.initialize(seed: s.seed, std: Float(s.model.initializerRange))
                try Checkpoint.writeModel(model, to: out + "/params.safetensors")
                let batch = TokenBatch(batch: s.batch, seqLen: s.seq_len, tokens: s.tokens, targets: s.targets, documentStart: s.document_start)
                var logits = try model.logits(batch)
                let counted = s.targets.filter { $0 >= 0 }.count
                let optimizer = AdamW(config: s.optimizer, parameters: model.parameters)
                var losses: [Double] = [], norms: [Double] = []
                for (i, lr) in s.lrs.enumerated() {
                    model.gradients.zero()
                    let r = try model.forward(batch, lossScale: 1 / Float(counted), computeGradients: true)
                    losses.append(r.loss / Double(r.count))
                    if i == 0 {
                        let tensors = model.parameters.slots.map {
                            SafetensorsWriter.Tensor(name: $0.name, shape: $0.shape, data: model.gradients.pointer + $0.offset)
                        }
                        try SafetensorsWriter.write(tensors, to: out + "/grads.safetensors")
                    }
                    norms.append(optimizer.update(parameters: model.parameters.values, gradients: model.gradients, lr: lr))
                }
                try logits.withUnsafeMutableBufferPointer { p in
                    try SafetensorsWriter.write([.init(name: "logits", shape: [s.batch * s.seq_len, s.model.vocabSize], data: p.baseAddress!)],
                                                to: out + "/logits.safetensors")
                }
                struct Result: Encodable { let losses: [Double]; let grad_norms: [Double] }
                let enc = JSONEncoder()
                try enc.encode(Result(losses: losses, grad_norms: norms)).write(to: URL(fileURLWithPath: out + "/result.json"))
            }
        }
    }

    /// Last-position logits of a prompt through the KV-cache session, for parity tests.
    struct Logits: ParsableCommand {
        @Argument var model: String
        @Option var prompt: String
        func run() throws {
            try runReportingErrors {
                let pretrained = try PretrainedModel.load(model)
                let ids = pretrained.tokenizer.encode(prompt)
                let logits = try InferenceSession(model: pretrained.model, capacity: ids.count).feed(ids)
                struct Out: Encodable { let ids: [Int32]; let logits: [Float] }
                printJSON(Out(ids: ids, logits: logits))
            }
        }
    }
}
