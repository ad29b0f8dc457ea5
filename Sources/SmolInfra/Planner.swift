import Foundation
import SmolModel

/// Accelerators the planner knows: dense BF16 peak (TFLOP/s) and memory (GB).
public struct Accelerator: Codable, Sendable {
    public let name: String
    public let peakTflops: Double
    public let memoryGB: Double
    public static let known: [Accelerator] = [
        Accelerator(name: "h100", peakTflops: 989, memoryGB: 80),
        Accelerator(name: "h200", peakTflops: 989, memoryGB: 141),
        Accelerator(name: "a100", peakTflops: 312, memoryGB: 80),
        Accelerator(name: "b200", peakTflops: 2250, memoryGB: 192),
    ]
    enum CodingKeys: String, CodingKey { case name, peakTflops = "peak_tflops", memoryGB = "memory_gb" }
}

/// What to plan: a model, a token budget, a cluster layout and its reliability.
public struct PlanInput: Sendable {
    public var model: LlamaConfig
    public var tokens: Double
    public var accelerator: Accelerator
    public var mfu = 0.30
    public var dataParallel = 1, tensorParallel = 1, pipelineParallel = 1
    public var zeroStage = 0
    /// bf16: mixed precision as on GPUs (bf16 weights, grads and activations; fp32 master weights and
    /// Adam moments; Megatron's vocabulary-parallel embedding). fp32: what smol trains on CPU (fp32
    /// everything, no master copy; its tensor parallelism keeps the embedding and head whole on every
    /// rank when the vocabulary does not divide by tp, and its attention keeps no score matrix, only
    /// each row's log-sum-exp).
    public var precision: Precision = .bf16
    public enum Precision: String, Codable, Sendable, CaseIterable { case bf16, fp32 }
    public var microBatch = 1
    public var gradientAccumulation = 1
    public var seqLen = 4096
    /// Checkpoint write bandwidth (GB/s) and mean time between failures of one accelerator (hours).
    public var checkpointWriteGBps = 5.0
    public var mtbfHoursPerDevice = 50_000.0   // Llama 3: ~1 interruption per 50k GPU-hours
    /// Ablations and debugging as fractions of the main run (playbook: 115,200 and 46,080 of 276,480 GPU-hours).
    public var ablationFraction = 115_200.0 / 276_480.0
    public var debugFraction = 46_080.0 / 276_480.0
    /// When only a parameter count is known, it replaces the config's exact count.
    public var parameterOverride: Int?

    public init(model: LlamaConfig, tokens: Double, accelerator: Accelerator) {
        self.model = model; self.tokens = tokens; self.accelerator = accelerator
    }

    public var devices: Int { dataParallel * tensorParallel * pipelineParallel }
}

public struct MemoryPlan: Codable, Sendable {
    public let weightsGB: Double, gradientsGB: Double, optimizerGB: Double
    public let activationsNoRecomputeGB: Double, activationsSelectiveGB: Double, activationsFullGB: Double
    public let totalNoRecomputeGB: Double, totalSelectiveGB: Double, totalFullGB: Double
    enum CodingKeys: String, CodingKey {
        case weightsGB = "weights_gb", gradientsGB = "gradients_gb", optimizerGB = "optimizer_gb"
        case activationsNoRecomputeGB = "activations_no_recompute_gb", activationsSelectiveGB = "activations_selective_gb"
        case activationsFullGB = "activations_full_gb", totalNoRecomputeGB = "total_no_recompute_gb"
        case totalSelectiveGB = "total_selective_gb", totalFullGB = "total_full_gb"
    }
}

public struct Plan: Codable, Sendable {
    public let parameters: Int
    public let flopsPerToken: Double
    public let totalFlops: Double
    public let devices: Int
    public let accelerator: String
    public let mfu: Double
    public let seconds: Double
    public let days: Double
    public let deviceHours: Double
    public let tokensPerStep: Int
    public let steps: Int
    public let memoryPerDevice: MemoryPlan
    public let checkpointGB: Double
    public let checkpointWriteSeconds: Double
    public let jobMtbfHours: Double
    public let youngIntervalMinutes: Double
    public let dalyIntervalMinutes: Double
    public let ablationDeviceHours: Double
    public let debugDeviceHours: Double
    public let overheadFraction: Double

    enum CodingKeys: String, CodingKey {
        case parameters, flopsPerToken = "flops_per_token", totalFlops = "total_flops", devices, accelerator, mfu
        case seconds, days, deviceHours = "device_hours", tokensPerStep = "tokens_per_step", steps
        case memoryPerDevice = "memory_per_device", checkpointGB = "checkpoint_gb", checkpointWriteSeconds = "checkpoint_write_s"
        case jobMtbfHours = "job_mtbf_hours", youngIntervalMinutes = "young_interval_min", dalyIntervalMinutes = "daly_interval_min"
        case ablationDeviceHours = "ablation_device_hours", debugDeviceHours = "debug_device_hours"
        case overheadFraction = "overhead_fraction"
    }
}

/// Compute, time, memory and checkpoint planning from shared/reference/infrastructure.md.
public enum Planner {
    /// Young: τ = sqrt(2 δ M).
    public static func young(delta: Double, mtbf: Double) -> Double { (2 * delta * mtbf).squareRoot() }

    /// Daly: τ = sqrt(2δM)·(1 + sqrt(δ/(2M))/3 + (δ/(2M))/9) − δ for δ < 2M, else M.
    public static func daly(delta: Double, mtbf m: Double) -> Double {
        guard delta < 2 * m else { return m }
        let r = delta / (2 * m)
        return (2 * delta * m).squareRoot() * (1 + r.squareRoot() / 3 + r / 9) - delta
    }

    /// Activation bytes per layer (Korthikanti et al.): s·b·h·(10 + 24/t + 5·a·s/(h·t)) without
    /// recomputation, s·b·h·(10 + 24/t) with selective recomputation, 2·s·b·h with full.
    public static func activationBytesPerLayer(seq s: Double, microBatch b: Double, hidden h: Double, heads a: Double,
                                               tensorParallel t: Double) -> (none: Double, selective: Double, full: Double) {
        (s * b * h * (10 + 24 / t + 5 * a * s / (h * t)), s * b * h * (10 + 24 / t), 2 * s * b * h)
    }

    public static func plan(_ p: PlanInput) -> Plan {
        let m = p.model
        let count = p.parameterOverride ?? m.parameterCount
        let n = Double(count)
        let flopsPerToken = 6 * n + 12 * Double(m.numHiddenLayers * m.numAttentionHeads * m.headDim) * Double(p.seqLen)
        let total = flopsPerToken * p.tokens
        let devices = p.devices
        let seconds = total / (Double(devices) * p.accelerator.peakTflops * 1e12 * p.mfu)
        let deviceHours = seconds / 3600 * Double(devices)
        let tokensPerStep = p.dataParallel * p.microBatch * p.gradientAccumulation * p.seqLen
        let steps = Int((p.tokens / Double(tokensPerStep)).rounded(.up))

        // Mixed precision: bf16 weights (2) and grads (2), fp32 master + m + v (12); fp32: 4 + 4 and
        // m + v (8). TP and PP split the model; ZeRO-1 shards the optimizer bytes over DP, ZeRO-2 the
        // grads too, ZeRO-3 the weights too.
        let smol = p.precision == .fp32
        // smol splits the embedding and head over the tensor-parallel ranks only when the vocabulary divides by them.
        let embeddingWhole = smol && p.parameterOverride == nil && p.tensorParallel > 1 && m.vocabSize % p.tensorParallel != 0
        let embedding = embeddingWhole ? Double(m.vocabSize * m.hiddenSize * (m.tieWordEmbeddings ? 1 : 2)) : 0
        let modelShard = smol ? embedding / Double(p.pipelineParallel) + (n - embedding) / Double(p.tensorParallel * p.pipelineParallel)
                              : n / Double(p.tensorParallel * p.pipelineParallel)
        let dp = Double(p.dataParallel)
        let (w, g, o): (Double, Double, Double) = p.precision == .fp32 ? (4, 4, 8) : (2, 2, 12)
        let weights = w * modelShard / (p.zeroStage >= 3 ? dp : 1)
        let grads = g * modelShard / (p.zeroStage >= 2 ? dp : 1)
        let optimizer = o * modelShard / (p.zeroStage >= 1 ? dp : 1)
        let layersHere = Double(m.numHiddenLayers) / Double(p.pipelineParallel)
        // Korthikanti's bytes are for 16-bit activations; fp32 keeps twice as many.
        let act16 = activationBytesPerLayer(seq: Double(p.seqLen), microBatch: Double(p.microBatch), hidden: Double(m.hiddenSize),
                                            heads: Double(m.numAttentionHeads), tensorParallel: Double(p.tensorParallel))
        let scale = p.precision == .fp32 ? 2.0 : 1.0
        // Without scores kept (smol's attention), no recomputation stores what selective recomputation does.
        let act = (none: (smol ? act16.selective : act16.none) * scale, selective: act16.selective * scale, full: act16.full * scale)
        let gb = 1e9
        let states = (weights + grads + optimizer) / gb
        let none = act.none * layersHere / gb, selective = act.selective * layersHere / gb
        let full = (act.full * layersHere + act.none) / gb     // plus one layer's full set during its backward
        let memory = MemoryPlan(weightsGB: weights / gb, gradientsGB: grads / gb, optimizerGB: optimizer / gb,
                                activationsNoRecomputeGB: none, activationsSelectiveGB: selective, activationsFullGB: full,
                                totalNoRecomputeGB: states + none, totalSelectiveGB: states + selective, totalFullGB: states + full)

        // A training checkpoint: fp32 master weights + two fp32 Adam moments = 12 bytes per parameter.
        let checkpointGB = 12 * n / gb
        let delta = checkpointGB / p.checkpointWriteGBps
        let jobMtbfHours = p.mtbfHoursPerDevice / Double(devices)
        let mtbfSeconds = jobMtbfHours * 3600
        return Plan(parameters: count, flopsPerToken: flopsPerToken, totalFlops: total, devices: devices,
                    accelerator: p.accelerator.name, mfu: p.mfu, seconds: seconds, days: seconds / 86_400,
                    deviceHours: deviceHours, tokensPerStep: tokensPerStep, steps: steps, memoryPerDevice: memory,
                    checkpointGB: checkpointGB, checkpointWriteSeconds: delta, jobMtbfHours: jobMtbfHours,
                    youngIntervalMinutes: young(delta: delta, mtbf: mtbfSeconds) / 60,
                    dalyIntervalMinutes: daly(delta: delta, mtbf: mtbfSeconds) / 60,
                    ablationDeviceHours: deviceHours * p.ablationFraction, debugDeviceHours: deviceHours * p.debugFraction,
                    overheadFraction: p.ablationFraction + p.debugFraction)
    }
}
