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
        enum CodingKeys: String, CodingKey {
            case name, batch, seqLen = "seq_len", parameters, steps, secondsPerStep = "seconds_per_step"
            case tokensPerSecond = "tokens_per_s", modelGflops = "model_gflops", mfu, peakGflops = "peak_gflops"
            case peakRssBytes = "peak_rss_bytes", threads, blasCore = "blas_core"
        }
    }

    /// Runs `warmup` untimed steps, then `steps` timed ones; reports the median step time.
    public static func run(_ shape: Shape, steps: Int, warmup: Int = 1, peakGflops: Double) throws -> Result {
        let model = try LlamaModel(config: shape.model)
        model.parameters.initialize(seed: 1, std: 0.02)
        let step = TrainStep(model: model, optimizer: AdamW(config: OptimizerConfig(), parameters: model.parameters))
        var rng = RandomStream(seed: 1, purpose: "bench-tokens")
        let n = shape.batch * shape.seqLen
        let tokens = (0..<(n + 1)).map { _ in Int32(rng.nextInt(below: shape.model.vocabSize)) }
        let batch = TokenBatch(batch: shape.batch, seqLen: shape.seqLen, tokens: Array(tokens[0..<n]), targets: Array(tokens[1...n]))
        var times: [Double] = []
        for i in 0..<(warmup + steps) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            try step([batch], lr: 1e-4)
            let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
            if i >= warmup { times.append(dt) }
        }
        times.sort()
        let median = times[times.count / 2]
        let tps = Double(n) / median
        let gflops = tps * shape.model.modelFlopsPerToken(sequenceLength: shape.seqLen) / 1e9
        return Result(name: shape.name, batch: shape.batch, seqLen: shape.seqLen, parameters: shape.model.parameterCount,
                      steps: steps, secondsPerStep: median, tokensPerSecond: tps, modelGflops: gflops,
                      mfu: gflops / peakGflops, peakGflops: peakGflops, peakRssBytes: 0, threads: Parallel.threads,
                      blasCore: BLAS.coreName)
    }
}
