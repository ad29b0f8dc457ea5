import Foundation
import SmolModel
import SmolTensor

/// Times full training steps (forward, backward, clip, AdamW) of a model shape on random tokens.
public enum TrainBenchmark {
    public struct Shape: Sendable {
        public let name: String
        public let model: LlamaConfig
        public let batch: Int, seqLen: Int
    }

    /// The two shapes of the foundation issue, to set beside PyTorch eager on the same machine.
    public static let shapes: [Shape] = [
        Shape(name: "tiny", model: LlamaConfig(vocabSize: 8192, hiddenSize: 256, numHiddenLayers: 6, numAttentionHeads: 4,
                                               numKeyValueHeads: 2, intermediateSize: 688, ropeTheta: 10_000,
                                               tieWordEmbeddings: true, maxPositionEmbeddings: 256),
              batch: 16, seqLen: 256),
        Shape(name: "smollm2-135m", model: LlamaConfig(vocabSize: 49152, hiddenSize: 576, numHiddenLayers: 30, numAttentionHeads: 9,
                                                       numKeyValueHeads: 3, intermediateSize: 1536, ropeTheta: 100_000,
                                                       tieWordEmbeddings: true, maxPositionEmbeddings: 2048),
              batch: 4, seqLen: 512),
    ]

    public struct Result: Codable, Sendable {
        public var name: String
        public var batch: Int, seqLen: Int
        public var parameters: Int
        public var steps: Int
        public var secondsPerStep: Double
        public var tokensPerSecond: Double
        public var modelGflops: Double
        public var mfu: Double
        public var peakGflops: Double
        public var peakRssBytes: Int
        public var threads: Int
        /// OpenBLAS's kernel set ("Haswell", "SkylakeX", ...): GEMM speed depends on it.
        public var blasCore: String
        /// Data-parallel ranks (each runs batch × seq_len), all ranks' tokens per second, and the
        /// share of the step spent in collectives (this rank's).
        public var worldSize = 1
        /// Tensor-parallel ranks sharing one model (the world is worldSize / tp replicas of it).
        public var tp = 1
        public var totalTokensPerSecond = 0.0
        public var communicationShare = 0.0
        /// What the step optimises; for a preference objective, the seconds the frozen reference
        /// takes to score one step's pairs (paid once before training, not per step).
        public var objective = TrainingObjective.pretrain
        public var referenceSecondsPerStep: Double?
        /// Distillation from a teacher of the same shape: "whole" or "top-k K", and the share of the
        /// step the teacher's forward (and top-k selection) takes.
        public var distill: String?
        public var teacherShare: Double?
        /// The GEMMs' input format the step ran in (bf16 falls back to fp32 where unavailable).
        public var precision = MatmulPrecision.fp32
        enum CodingKeys: String, CodingKey {
            case precision
            case distill, teacherShare = "teacher_share"
            case objective, referenceSecondsPerStep = "reference_seconds_per_step"
            case worldSize = "world_size", tp, totalTokensPerSecond = "total_tokens_per_s", communicationShare = "communication_share"
            case name, batch, seqLen = "seq_len", parameters, steps, secondsPerStep = "seconds_per_step"
            case tokensPerSecond = "tokens_per_s", modelGflops = "model_gflops", mfu, peakGflops = "peak_gflops"
            case peakRssBytes = "peak_rss_bytes", threads, blasCore = "blas_core"
        }
    }

    /// Runs `warmup` untimed steps, then `steps` timed ones; reports the median step time. Under
    /// data parallelism every rank runs the shape on its own tokens and the gradients are summed;
    /// with `tp` > 1 each group of tp consecutive ranks shares one model's shards and one batch.
    ///
    /// SFT and preference objectives run the same rows, so their step times compare: each row holds
    /// two documents of seq_len / 2 tokens (a preference pair: chosen, rejected), attention stopping
    /// at their edge, with loss on the second half of each (the completion).
    public static func run(_ shape: Shape, steps: Int, warmup: Int = 1, peakGflops: Double,
                           collectives: Collectives = SingleProcess(), tp: Int = 1, zero: Int = 0, objective: TrainingObjective = .pretrain,
                           distill: (topK: Int?, Void)? = nil, precision: MatmulPrecision = .fp32) throws -> Result {
        var config = shape.model
        config.intraDocumentMasking = objective.usesChatData
        if let bad = TensorParallelPlan.indivisible(config, size: tp) { throw ConfigError.invalidValue(key: bad.key, reason: bad.reason) }
        guard collectives.size % tp == 0 else { throw ConfigError.invalidValue(key: "tp", reason: "\(tp) does not divide the \(collectives.size) ranks") }
        let groups = try ParallelGroups(world: collectives, tp: tp)
        let tensorGroup = groups.tensor, dataGroup = groups.data
        let plan = TensorParallelPlan(size: tp, rank: tensorGroup?.rank ?? 0, vocabSize: config.vocabSize)
        let model = try LlamaModel(config: plan.localConfig(config))
        model.tensorParallel = tensorGroup.map { TensorParallel(group: $0, vocabSize: config.vocabSize) }
        model.parameters.initialize(seed: 1, std: 0.02, tensorParallel: plan)
        model.matmulPrecision = MatmulPrecision.resolve(precision).precision
        let shard = zero >= 1 ? TrainStep.shard(count: model.parameters.count, ranks: dataGroup.size, rank: dataGroup.rank) : nil
        let step = TrainStep(model: model, optimizer: AdamW(config: OptimizerConfig(), parameters: model.parameters, shard: shard),
                             collectives: dataGroup, zero: zero)
        var rng = RandomStream(seed: 1, purpose: "bench-tokens", coordinates: [dataGroup.rank])
        let n = shape.batch * shape.seqLen
        let tokens = (0..<(n + 1)).map { _ in Int32(rng.nextInt(below: shape.model.vocabSize)) }
        var batch = TokenBatch(batch: shape.batch, seqLen: shape.seqLen, tokens: Array(tokens[0..<n]), targets: Array(tokens[1...n]))
        var referenceSeconds: Double?
        if objective.usesChatData {
            let half = shape.seqLen / 2
            batch.documentStart = (0..<n).map { Int32($0 % shape.seqLen < half ? 0 : half) }
            for i in 0..<n where (i % shape.seqLen) % half < half / 2 { batch.targets[i] = -1 }
            batch.referenceLogProbs = [Double](repeating: -20, count: 2 * shape.batch)
            if let p = objective.preference { step.preference = (p, 0.1) }
        }
        if let distill {   // a teacher of the same shape, other weights; α = 0.5, T = 2 (the cost does not depend on them)
            guard tp == 1 else { throw ConfigError.invalidValue(key: "tp", reason: "distillation runs with tp = 1") }
            let teacher = try LlamaModel(config: config)
            teacher.parameters.initialize(seed: 2, std: 0.02)
            step.distillation = try DistillationTeacher(model: teacher, alpha: 0.5, temperature: 2, topK: distill.topK, cacheDirectory: nil)
        }
        var times: [Double] = [], comm: [Double] = [], teacher: [Double] = []
        for i in 0..<(warmup + steps) {
            step.resetTimers(); step.distillation?.resetTimers()
            let t0 = DispatchTime.now().uptimeNanoseconds
            try step([batch], lr: 1e-4)
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
            if i >= warmup { times.append(dt); comm.append(step.communicationSeconds / dt); teacher.append((step.distillation?.teacherSeconds ?? 0) / dt) }
        }
        if objective.preference != nil {   // the reference's forward over one step's pairs, warm
            let t0 = DispatchTime.now().uptimeNanoseconds
            _ = try model.tokenLosses(batch)
            referenceSeconds = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
        }
        times.sort(); comm.sort()
        let median = times[times.count / 2]
        let tps = Double(n) / median
        let gflops = tps * shape.model.modelFlopsPerToken(sequenceLength: shape.seqLen) / 1e9
        return Result(name: shape.name, batch: shape.batch, seqLen: shape.seqLen, parameters: shape.model.parameterCount,
                      steps: steps, secondsPerStep: median, tokensPerSecond: tps, modelGflops: gflops,
                      mfu: gflops / peakGflops, peakGflops: peakGflops, peakRssBytes: 0, threads: Parallel.threads,
                      blasCore: BLAS.coreName, worldSize: collectives.size, tp: tp, totalTokensPerSecond: tps * Double(dataGroup.size),
                      communicationShare: comm[comm.count / 2], objective: objective, referenceSecondsPerStep: referenceSeconds,
                      distill: distill.map { $0.topK.map { "top-k \($0)" } ?? "whole" }, teacherShare: distill == nil ? nil : teacher.sorted()[teacher.count / 2],
                      precision: model.matmulPrecision)
    }
}
