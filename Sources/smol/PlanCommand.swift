import ArgumentParser
import Foundation
import SmolInfra
import SmolModel
import SmolTrainer

struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Plan a training run: compute, time, GPU-hours, memory per GPU, steps, checkpoints.",
        discussion: """
        The SmolLM3 worked example (3B, 11T tokens, 384 H100, TP 2 × DP 192, micro-batch 3 × 4096, 30% MFU):
          smol plan configs/smollm3-3b.yaml --tokens 11e12 --gpu h100 --dp 192 --tp 2 --micro-batch 3 --seq 4096 --zero 1
        With only a parameter count (the shape is still needed for the attention and activation terms):
          smol plan --params 1.7e9 --layers 24 --hidden 2048 --heads 32 --tokens 11e12 --dp 64
        """)

    @Argument(help: "A training YAML (its model section) or a Hugging Face config.json.") var config: String?
    @Option(help: "Parameter count, instead of a config.") var params: Double?
    @Option(help: "Layers (with --params).") var layers: Int?
    @Option(help: "Hidden size (with --params).") var hidden: Int?
    @Option(help: "Attention heads (with --params).") var heads: Int?
    @Option(help: "Token budget, e.g. 11e12.") var tokens: Double
    @Option(help: "Accelerator: h100, h200, a100, b200.") var gpu: String = "h100"
    @Option(help: "Model FLOPs utilisation.") var mfu: Double = 0.30
    @Option(help: "Data-parallel degree.") var dp: Int = 1
    @Option(help: "Tensor-parallel degree.") var tp: Int = 1
    @Option(help: "Pipeline-parallel degree.") var pp: Int = 1
    @Option(help: "ZeRO stage 0–3.") var zero: Int = 0
    @Option(help: "bf16 (mixed precision, as on GPUs) or fp32 (smol's CPU training).") var precision: PlanInput.Precision = .bf16
    @Option(help: "Micro-batch per GPU (sequences).") var microBatch: Int = 1
    @Option(help: "Gradient-accumulation steps.") var gradAccum: Int = 1
    @Option(help: "Sequence length.") var seq: Int = 4096
    @Option(help: "Checkpoint write bandwidth, GB/s.") var ckptWriteGbps: Double = 5
    @Option(help: "Mean time between failures of one GPU, hours.") var mtbfHours: Double = 50_000
    @Flag(help: "Print the plan as JSON.") var json = false

    func run() throws {
        try runReportingErrors {
            guard let acc = Accelerator.known.first(where: { $0.name == gpu.lowercased() }) else {
                throw CLIError(message: "unknown --gpu '\(gpu)' (known: \(Accelerator.known.map(\.name).joined(separator: ", ")))")
            }
            for (name, v) in [("--dp", dp), ("--tp", tp), ("--pp", pp), ("--micro-batch", microBatch), ("--grad-accum", gradAccum), ("--seq", seq)] where v < 1 {
                throw CLIError(message: "\(name) must be ≥ 1, got \(v)")
            }
            guard (0...3).contains(zero) else { throw CLIError(message: "--zero must be 0, 1, 2 or 3") }
            guard tokens > 0, mfu > 0, mfu <= 1, ckptWriteGbps > 0, mtbfHours > 0 else {
                throw CLIError(message: "--tokens, --ckpt-write-gbps and --mtbf-hours must be positive and --mfu in (0, 1]")
            }
            let model: LlamaConfig
            var override: Int?
            if let config {
                model = try TrainConfig.loadModel(path: config)
            } else if let params, let layers, let hidden, let heads {
                guard params > 0, layers > 0, hidden > 0, heads > 0, hidden % heads == 0 else {
                    throw CLIError(message: "--params, --layers, --hidden, --heads must be positive and heads must divide hidden")
                }
                model = LlamaConfig(vocabSize: 1, hiddenSize: hidden, numHiddenLayers: layers, numAttentionHeads: heads, intermediateSize: 1)
                override = Int(params)
            } else {
                throw CLIError(message: "give a config file, or --params with --layers, --hidden and --heads")
            }
            var input = PlanInput(model: model, tokens: tokens, accelerator: acc)
            input.mfu = mfu; input.dataParallel = dp; input.tensorParallel = tp; input.pipelineParallel = pp
            input.zeroStage = zero; input.precision = precision; input.microBatch = microBatch; input.gradientAccumulation = gradAccum; input.seqLen = seq
            input.checkpointWriteGBps = ckptWriteGbps; input.mtbfHoursPerDevice = mtbfHours; input.parameterOverride = override
            let p = Planner.plan(input)
            if json { printJSON(p); return }
            let m = p.memoryPerDevice
            print("parameters          \(p.parameters) (\(formatCount(p.parameters)))")
            print(String(format: "FLOPs per token     %.4g  (6N + 12·L·H·Q·T at T = %d)", p.flopsPerToken, seq))
            print(String(format: "total FLOPs         %.4g  over %.4g tokens", p.totalFlops, tokens))
            print(String(format: "cluster             %d × %@ (DP %d × TP %d × PP %d), %.0f TFLOP/s bf16 peak each, MFU %.0f%%",
                         p.devices, acc.name.uppercased(), dp, tp, pp, acc.peakTflops, mfu * 100))
            print(String(format: "time                %.1f days (%.1f weeks), %.0f GPU-hours", p.days, p.days / 7, p.deviceHours))
            print("tokens per step     \(p.tokensPerStep) (DP × micro-batch × accumulation × seq); \(p.steps) steps")
            print(String(format: "memory per GPU      weights %.2f + grads %.2f + Adam %.2f GB (ZeRO-%d)", m.weightsGB, m.gradientsGB, m.optimizerGB, zero))
            print(String(format: "  + activations     %.2f GB none / %.2f selective / %.2f full recomputation", m.activationsNoRecomputeGB, m.activationsSelectiveGB, m.activationsFullGB))
            print(String(format: "  = total           %.2f / %.2f / %.2f GB  (%@ has %.0f GB)", m.totalNoRecomputeGB, m.totalSelectiveGB, m.totalFullGB, acc.name.uppercased(), acc.memoryGB))
            print(String(format: "checkpoint          %.1f GB (fp32 weights + Adam), %.0f s to write at %.1f GB/s", p.checkpointGB, p.checkpointWriteSeconds, ckptWriteGbps))
            print(String(format: "interval            Young %.0f min, Daly %.0f min (job MTBF %.1f h)", p.youngIntervalMinutes, p.dalyIntervalMinutes, p.jobMtbfHours))
            print(String(format: "ablations + debug   %.0f + %.0f GPU-hours (%.0f%% of the main run, the playbook's ratio)",
                         p.ablationDeviceHours, p.debugDeviceHours, p.overheadFraction * 100))
        }
    }
}

extension PlanInput.Precision: ExpressibleByArgument {}
