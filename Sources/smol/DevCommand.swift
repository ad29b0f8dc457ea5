import ArgumentParser
import SmolHub
import SmolModel
import SmolTensor
import Foundation
import SmolWeights
import SmolFormats
import SmolMPI
import SmolTrainer

/// Hooks for the test suite: they expose internals to independent reference implementations.
struct DevCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev", abstract: "Developer tools used by the tests.", shouldDisplay: false,
        subcommands: [Logits.self, Parity.self, GGUFInfo.self, Rope.self, Gemm.self])

    /// One GEMM of float32 safetensors `a` [rows, cols] and `b` (and `c` when beta ≠ 0) in a given
    /// precision, C written to `out` as safetensors `c`; prints the kernel that ran.
    struct Gemm: ParsableCommand {
        @Option var input: String
        @Option var out: String
        @Option var precision: MatmulPrecision = .fp32
        @Flag var transA = false
        @Flag var transB = false
        @Option var alpha: Float = 1
        @Option var beta: Float = 0

        func run() throws {
            try runReportingErrors {
                let f = try SafetensorsFile(path: input)
                guard let ea = f.entries["a"], let eb = f.entries["b"], ea.shape.count == 2, eb.shape.count == 2 else {
                    throw CLIError(message: "\(input): needs 2-D tensors a and b")
                }
                let (m, k) = transA ? (ea.shape[1], ea.shape[0]) : (ea.shape[0], ea.shape[1])
                let (k2, n) = transB ? (eb.shape[1], eb.shape[0]) : (eb.shape[0], eb.shape[1])
                guard k == k2 else { throw CLIError(message: "\(input): op(a) is \(m)×\(k), op(b) \(k2)×\(n)") }
                let a = try f.array("a"), b = try f.array("b")
                var c = beta != 0 ? try f.array("c") : [Float](repeating: .nan, count: m * n)   // NaN: beta = 0 must not read C
                guard c.count == m * n else { throw CLIError(message: "\(input): c must be \(m)×\(n)") }
                let resolved = MatmulPrecision.resolve(precision)
                if resolved.precision == .bf16 && m * n > 0 {
                    BF16GEMM.multiply(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: ea.shape[1], b: b, ldb: eb.shape[1],
                                      beta: beta, c: &c, ldc: n)
                } else {
                    BLAS.sgemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: ea.shape[1], b: b, ldb: eb.shape[1],
                               beta: beta, c: &c, ldc: n)
                }
                try c.withUnsafeBufferPointer { p in
                    try SafetensorsWriter.write([.init(name: "c", shape: [m, n], data: p.baseAddress!)], to: out)
                }
                struct Out: Encodable { let precision: String; let kernel: String }
                printJSON(Out(precision: resolved.precision.rawValue,
                              kernel: resolved.precision == .bf16 ? BF16GEMM.kernel!.rawValue : "openblas-sgemm"))
            }
        }
    }

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
    /// Under mpirun the ranks split it as `tp` (default: all ranks) × the rest data parallel, and
    /// rank 0 writes the gathered whole tensors.
    struct Parity: ParsableCommand {
        @Option var spec: String
        @Option var out: String

        struct Spec: Decodable {
            /// The model to build and initialise from `seed`, or `init_from`: weights to load.
            let model: LlamaConfig?
            let init_from: String?
            /// Split `batch` into this many micro-batches of one step (default 1).
            let micro_batches: Int?
            let skip_logits: Bool?
            let seed: UInt64
            let batch: Int
            let seq_len: Int
            let tokens: [Int32]
            let targets: [Int32]
            let document_start: [Int32]?
            let optimizer: OptimizerConfig
            let lrs: [Double]
            /// A preference objective: each row is a pair (chosen from position 0, rejected as the
            /// second document), with the reference's log-probs, 2 per row.
            let objective: PreferenceObjective?
            let beta: Double?
            let reference_logps: [Double]?
            /// Under mpirun: tensor-parallel ranks (the rest of the world is data parallel).
            let tp: Int?
            /// Knowledge distillation from a teacher of the same config initialised from `teacher_seed`
            /// (its weights are written to teacher.safetensors).
            let distill: DistillSpec?
            /// The GEMMs' input format (training.precision); default fp32.
            let precision: MatmulPrecision?
        }
        struct DistillSpec: Decodable {
            let teacher_seed: UInt64
            let alpha: Double
            let temperature: Double
            let top_k: Int?
        }

        func run() throws {
            try runReportingErrors {
                guard let data = FileManager.default.contents(atPath: spec) else { throw CLIError(message: "\(spec): cannot read") }
                let s = try JSONDecoder().decode(Spec.self, from: data)
                let comm = Communicator.launchedByMPI ? try Communicator() : nil
                defer { comm?.finalize() }
                let world: Collectives = comm ?? SingleProcess()
                let tp = s.tp ?? world.size
                guard tp >= 1, world.size % tp == 0 else { throw CLIError(message: "\(spec): tp \(tp) does not divide \(world.size) ranks") }
                let dp = world.size / tp
                let groups = try ParallelGroups(world: world, tp: tp), dataGroup = groups.data
                if world.rank == 0 { try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true) }
                let model: LlamaModel, whole: ParameterStore, wholeVocab: Int
                if let from = s.init_from {
                    // Released weights (GGUF, HF directory, run), float32 only.
                    let source = try PretrainedModel.load(from, decodeWeights: false).model
                    if let bad = TensorParallelPlan.indivisible(source.config, size: tp) { throw CLIError(message: "\(from): \(bad.key): \(bad.reason)") }
                    let plan = TensorParallelPlan(size: tp, rank: groups.tensor?.rank ?? 0, vocabSize: source.config.vocabSize)
                    model = tp == 1 ? source : try LlamaModel(config: plan.localConfig(source.config))
                    if tp > 1 { model.parameters.load(from: source.parameters, plan: plan) }
                    whole = tp == 1 ? source.parameters : ParameterStore(config: source.config)   // the gather's target
                    wholeVocab = source.config.vocabSize
                } else {
                    guard let config = s.model else { throw CLIError(message: "\(spec): give model or init_from") }
                    if let bad = TensorParallelPlan.indivisible(config, size: tp) { throw CLIError(message: "\(spec): \(bad.key): \(bad.reason)") }
                    let plan = TensorParallelPlan(size: tp, rank: groups.tensor?.rank ?? 0, vocabSize: config.vocabSize)
                    model = try LlamaModel(config: plan.localConfig(config))
                    model.parameters.initialize(seed: s.seed, std: Float(config.initializerRange), tensorParallel: plan)
                    whole = ParameterStore(config: config)
                    wholeVocab = config.vocabSize
                }
                model.tensorParallel = groups.tensor.map { TensorParallel(group: $0, vocabSize: wholeVocab) }
                model.matmulPrecision = MatmulPrecision.resolve(s.precision ?? .fp32).precision
                /// A buffer of `model`'s layout, whole, written by rank 0.
                func write(_ name: String, _ buffer: FloatBuffer) throws {
                    // Without tensor parallelism the buffer is already whole, in the model's layout.
                    var data = buffer.pointer, layout = model.parameters
                    if let tp = model.tensorParallel {
                        try tp.gather(buffer.pointer, store: model.parameters, into: world.rank == 0 ? (whole, whole.values.pointer) : nil)
                        data = whole.values.pointer; layout = whole
                    }
                    guard world.rank == 0 else { return }
                    let tensors = layout.slots.map { SafetensorsWriter.Tensor(name: $0.name, shape: $0.shape, data: data + $0.offset) }
                    try SafetensorsWriter.write(tensors, to: out + "/" + name)
                }
                try write("params.safetensors", model.parameters.values)
                // The micro-batches of one step: `batch` rows each, accumulated as the trainer does;
                // data-parallel rank r takes micro-batches r, r + dp, …
                let perStep = s.micro_batches ?? 1
                let rows = s.batch / perStep, n = rows * s.seq_len
                guard rows * perStep == s.batch else { throw CLIError(message: "\(spec): batch \(s.batch) is not a multiple of micro_batches \(perStep)") }
                guard perStep % dp == 0 else { throw CLIError(message: "\(spec): micro_batches \(perStep) do not divide over dp = \(dp)") }
                let microBatches = stride(from: dataGroup.rank, to: perStep, by: dp).map { k in
                    var b = TokenBatch(batch: rows, seqLen: s.seq_len, tokens: Array(s.tokens[k * n ..< (k + 1) * n]),
                                       targets: Array(s.targets[k * n ..< (k + 1) * n]), documentStart: s.document_start.map { Array($0[k * n ..< (k + 1) * n]) })
                    b.referenceLogProbs = s.reference_logps.map { Array($0[2 * rows * k ..< 2 * rows * (k + 1)]) }
                    return b
                }
                if s.objective != nil && (s.reference_logps?.count != 2 * s.batch || s.document_start == nil) {
                    throw CLIError(message: "\(spec): a preference objective needs reference_logps (2 per row) and document_start")
                }
                var logits = s.skip_logits == true || tp > 1 ? [] : try model.logits(TokenBatch(batch: s.batch, seqLen: s.seq_len, tokens: s.tokens,
                                                                                     targets: s.targets, documentStart: s.document_start))
                let step = TrainStep(model: model, optimizer: AdamW(config: s.optimizer, parameters: model.parameters), collectives: dataGroup)
                if let objective = s.objective { step.preference = (objective, s.beta ?? 0.1) }
                if let d = s.distill {
                    guard tp == 1, s.objective == nil else { throw CLIError(message: "\(spec): distill goes with tp = 1 and no preference objective") }
                    let teacher = try LlamaModel(config: model.config)
                    teacher.parameters.initialize(seed: d.teacher_seed, std: Float(model.config.initializerRange))
                    if world.rank == 0 {
                        try SafetensorsWriter.write(teacher.parameters.slots.map { .init(name: $0.name, shape: $0.shape, data: teacher.parameters.values.pointer + $0.offset) },
                                                    to: out + "/teacher.safetensors")
                    }
                    step.distillation = try DistillationTeacher(model: teacher, alpha: d.alpha, temperature: d.temperature, topK: d.top_k, cacheDirectory: nil)
                }
                var losses: [Double] = [], norms: [Double] = []
                for (i, lr) in s.lrs.enumerated() {
                    let (loss, _) = try step.computeGradients(microBatches)
                    losses.append(loss)
                    if i == 0 { try write("grads.safetensors", model.gradients) }
                    norms.append(try step.update(lr: lr))
                }
                guard world.rank == 0 else { return }
                if !logits.isEmpty {
                    try logits.withUnsafeMutableBufferPointer { p in
                        try SafetensorsWriter.write([.init(name: "logits", shape: [s.batch * s.seq_len, model.config.vocabSize], data: p.baseAddress!)],
                                                    to: out + "/logits.safetensors")
                    }
                }
                struct Result: Encodable { let losses: [Double]; let grad_norms: [Double]; let precision: String; let kernel: String? }
                let enc = JSONEncoder()
                try enc.encode(Result(losses: losses, grad_norms: norms, precision: model.matmulPrecision.rawValue,
                                      kernel: model.matmulPrecision == .bf16 ? BF16GEMM.kernel?.rawValue : nil)).write(to: URL(fileURLWithPath: out + "/result.json"))
            }
        }
    }

    /// Last-position logits of a prompt through the KV-cache session, for parity tests.
    struct Logits: ParsableCommand {
        @Argument var model: String
        @Option var prompt: String?
        @Option(help: "Token ids instead of a prompt, comma-separated.") var ids: String?
        @Option(help: "Feed the last N tokens one at a time (the single-token decode path).") var decode: Int = 0
        @Option(help: "KV cache format: f32 or f16.") var kvCache: KVCacheFormat = .f32
        @Option(help: "Input format of the GEMMs of feeds longer than one token: fp32 or bf16.") var prefillPrecision: MatmulPrecision = .fp32
        func run() throws {
            try runReportingErrors {
                let pretrained = try PretrainedModel.load(model)
                let tokens: [Int32]
                if let ids { tokens = try ids.split(separator: ",").map { guard let v = Int32($0) else { throw CLIError(message: "--ids: '\($0)' is not an id") }; return v } }
                else { tokens = pretrained.tokenizer.encode(prompt ?? "") }
                guard !tokens.isEmpty, decode >= 0, decode < tokens.count else { throw CLIError(message: "need a non-empty prompt longer than --decode") }
                let session = InferenceSession(model: pretrained.model, capacity: tokens.count, kvCache: kvCache,
                                               prefillPrecision: prefillPrecision.resolvedSayingWhy())
                var logits = try session.feed(Array(tokens.dropLast(decode)))
                for t in tokens.suffix(decode) { logits = try session.feed([t]) }
                struct Out: Encodable { let ids: [Int32]; let logits: [Float] }
                printJSON(Out(ids: tokens, logits: logits))
            }
        }
    }

    /// A model's RoPE frequencies: inverse frequency per rotation pair and the attention factor.
    struct Rope: ParsableCommand {
        @Argument(help: "A config.json, GGUF, HF directory or run.") var model: String
        func run() throws {
            try runReportingErrors {
                let c = try PretrainedModel.readConfig(model)
                let dim = c.headDim
                var inverse = (0..<dim / 2).map { Foundation.pow(c.ropeTheta, -2.0 * Double($0) / Double(dim)) }
                var attention = 1.0
                if let y = c.ropeScaling { (inverse, attention) = y.parameters(dim: dim, theta: c.ropeTheta, maxPositionEmbeddings: c.maxPositionEmbeddings) }
                struct Out: Encodable { let inv_freq: [Double]; let attention_factor: Double; let rope_scaling: RopeScaling? }
                printJSON(Out(inv_freq: inverse, attention_factor: attention, rope_scaling: c.ropeScaling))
            }
        }
    }
}
