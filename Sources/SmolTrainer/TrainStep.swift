import Foundation
import SmolModel
import SmolTensor

/// One optimizer step, the only one: the trainer, `smol bench train` and the parity check all
/// call it. The loss is the mean over every target that carries loss (targets of -1 carry none)
/// in all the step's micro-batches together — on every data-parallel rank — so a micro-batch with
/// few counted tokens (an SFT batch mostly prompt) weighs by its tokens, not as a whole micro-batch.
///
/// Data parallel: every rank runs its own micro-batches, then the gradients are summed over ranks
/// through `collectives`, the data-parallel group (ZeRO-0: all-reduce of the flat gradient buffer,
/// in pieces; ZeRO-1: reduce-scatter, each rank updating its shard of the parameters with its shard
/// of AdamW's moments, then all-gather of the parameters).
///
/// Tensor parallel: the model is one rank's shard (`model.tensorParallel`) and communicates inside
/// its forward and backward; the step adds the QK-norm gradients' sum over the tensor-parallel
/// ranks and a gradient norm that counts each replicated tensor once.
public final class TrainStep {
    public let model: LlamaModel
    public let optimizer: AdamW
    public let collectives: Collectives
    public let zero: Int
    /// Every rank's shard of the flat buffer (ZeRO-1), in rank order.
    public let shards: [Range<Int>]
    /// Seconds spent in collectives since the last `resetTimers()`, the model's tensor-parallel ones included.
    public var communicationSeconds: Double { dataParallelSeconds + model.tensorParallelSeconds }
    private var dataParallelSeconds = 0.0
    /// A preference objective (DPO, APO) and its β: the micro-batches then hold one pair per row,
    /// and the loss is the mean over pairs of the objective's loss, not a mean over tokens.
    public var preference: (objective: PreferenceObjective, beta: Double)?
    /// The last `computeGradients`' pairs, summed over ranks (preference objectives).
    public private(set) var preferenceStats = PreferenceStats()
    /// Knowledge distillation: the teacher whose distribution each micro-batch's head also learns.
    public var distillation: DistillationTeacher?
    /// The last `computeGradients`' mean cross-entropy and mean KL from the teacher (distillation).
    public private(set) var distillationStats: (ce: Double, kl: Double) = (0, 0)

    public init(model: LlamaModel, optimizer: AdamW, collectives: Collectives = SingleProcess(), zero: Int = 0) {
        self.model = model
        self.optimizer = optimizer
        self.collectives = collectives
        self.zero = zero
        shards = zero >= 1 ? evenShards(count: model.parameters.count, ranks: collectives.size) : [0..<model.parameters.count]
    }

    /// The shards ZeRO-1 gives a model's flat buffer over `ranks` (what each rank's AdamW owns).
    public static func shard(count: Int, ranks: Int, rank: Int) -> Range<Int> { evenShards(count: count, ranks: ranks)[rank] }

    public func resetTimers() { dataParallelSeconds = 0; model.resetTensorParallelTimer() }

    private func communicate<T>(_ body: () throws -> T) rethrows -> T {
        let t0 = DispatchTime.now().uptimeNanoseconds
        defer { dataParallelSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9 }
        return try Profiler.time("collectives", body)
    }

    /// Targets that carry loss in `batches`.
    public static func countedTargets(_ batches: [TokenBatch]) -> Int {
        batches.reduce(0) { n, b in n + b.targets.reduce(0) { $0 + ($1 >= 0 ? 1 : 0) } }
    }

    /// Σ of their loss weights: the denominator of the step's mean loss (the count without weights).
    public static func lossWeight(_ batches: [TokenBatch]) -> Double { batches.reduce(0) { $0 + $1.lossWeight } }

    /// Zeroes the gradients, then accumulates d(mean loss)/dθ over this rank's `microBatches`
    /// and sums it over ranks. Returns the mean loss over all ranks and the number of counted
    /// targets (0 leaves the gradients zero).
    public func computeGradients(_ microBatches: [TokenBatch]) throws -> (loss: Double, counted: Int) {
        Profiler.time("zero_grad") { model.gradients.zero() }
        if let preference { return try preferenceGradients(microBatches, objective: preference.objective, beta: preference.beta) }
        let local = TrainStep.countedTargets(microBatches), localWeight = TrainStep.lossWeight(microBatches)
        var counted = local, weight = localWeight
        if collectives.size > 1 {
            try communicate {
                counted = Int(try collectives.allReduce(Double(local), op: .sum))
                weight = try collectives.allReduce(localWeight, op: .sum)
            }
        }
        let scale: Float = weight > 0 ? Float(1 / weight) : 0
        var sum = 0.0, ce = 0.0, kl = 0.0
        for b in microBatches {
            let target = try distillation?.target(for: b)
            sum += try model.forward(b, lossScale: scale, computeGradients: true, distill: target).loss
            if target != nil { ce += model.distillationSums.ce; kl += model.distillationSums.kl }
        }
        try model.sumPartialGradientsOverTensorParallelRanks()
        if collectives.size > 1 {
            try communicate {
                sum = try collectives.allReduce(sum, op: .sum)
                if distillation != nil { ce = try collectives.allReduce(ce, op: .sum); kl = try collectives.allReduce(kl, op: .sum) }
                try sumGradientsOverRanks()
            }
        }
        if distillation != nil { distillationStats = weight > 0 ? (ce / weight, kl / weight) : (0, 0) }
        return (weight > 0 ? sum / weight : 0, counted)
    }

    /// ZeRO-0: every rank gets the whole sum; ZeRO-1: each rank its shard of it.
    private func sumGradientsOverRanks() throws {
        if zero >= 1 {
            let mine = shards[collectives.rank]
            try collectives.reduceScatterSum(model.gradients.pointer, shards: shards, out: model.gradients.pointer + mine.lowerBound)
        } else {
            try collectives.allReduceSum(model.gradients.pointer, count: model.gradients.count)
        }
    }

    /// d(mean pair loss)/dθ: each micro-batch's forward scores its pairs, sets every completion
    /// token's weight to −∂loss/∂log π, and the backward runs on those weights.
    private func preferenceGradients(_ microBatches: [TokenBatch], objective: PreferenceObjective, beta: Double) throws -> (loss: Double, counted: Int) {
        let local = PreferenceBatch.pairCount(microBatches)
        var pairs = local
        if collectives.size > 1 { try communicate { pairs = Int(try collectives.allReduce(Double(local), op: .sum)) } }
        let scale: Float = pairs > 0 ? 1 / Float(pairs) : 0
        var stats = PreferenceStats()
        for b in microBatches {
            try model.forward(b, lossScale: scale, computeGradients: true) { losses, weights in
                stats = stats + PreferenceBatch.score(losses, batch: b, objective: objective, beta: beta, weights: weights)
            }
        }
        try model.sumPartialGradientsOverTensorParallelRanks()
        if collectives.size > 1 {
            try communicate {
                stats = try stats.allReduced(collectives)
                try sumGradientsOverRanks()
            }
        }
        preferenceStats = stats
        return (stats.pairs > 0 ? stats.loss / stats.pairs : 0, pairs)
    }

    /// The global gradient norm: with ZeRO-1 from every rank's reduced shard; with tensor
    /// parallelism from every rank's shards, each replicated tensor counted on rank 0 of its group.
    public func gradientNorm() throws -> Double {
        let tp = model.tensorParallel.flatMap { $0.plan.size > 1 ? $0 : nil }
        let sharded = zero >= 1 && collectives.size > 1
        guard sharded || tp != nil else { return AdamW.gradientNorm(model.gradients) }
        let mine = sharded ? shards[collectives.rank] : 0..<model.parameters.count
        var total = 0.0
        if let tp {
            // The optimizer's shard is `mine` (ZeRO-1's range of this rank, else everything).
            for s in model.parameters.slots where tp.plan.rank == 0 || tp.plan.split(of: s.name) != .replicated {
                let range = optimizer.owned(s)
                if !range.isEmpty { total += VectorMath.parallelSumOfSquares(model.gradients.pointer + range.lowerBound, range.count) }
            }
        } else {
            total = VectorMath.parallelSumOfSquares(model.gradients.pointer + mine.lowerBound, mine.count)
        }
        try communicate {
            if sharded { total = try collectives.allReduce(total, op: .sum) }
            if let tp { total = try tp.group.allReduce(total, op: .sum) }
        }
        return total.squareRoot()
    }

    /// Clips by the global norm and applies AdamW at `lr`; returns the norm before clipping.
    @discardableResult
    public func update(lr: Double, gradientNorm: Double? = nil) throws -> Double {
        let norm = try gradientNorm ?? self.gradientNorm()
        Profiler.time("adamw") { _ = optimizer.update(parameters: model.parameters.values, gradients: model.gradients, lr: lr, gradientNorm: norm) }
        if zero >= 1 && collectives.size > 1 {
            try communicate { try collectives.allGather(model.parameters.values.pointer, shards: shards) }
        }
        return norm
    }

    /// The whole step: gradients, clip, AdamW. Returns (mean loss, counted targets, pre-clip norm).
    @discardableResult
    public func callAsFunction(_ microBatches: [TokenBatch], lr: Double) throws -> (loss: Double, counted: Int, gradNorm: Double) {
        let (loss, counted) = try computeGradients(microBatches)
        return (loss, counted, try update(lr: lr))
    }
}
