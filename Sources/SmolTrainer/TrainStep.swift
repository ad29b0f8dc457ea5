import Foundation
import SmolModel
import SmolTensor

/// One optimizer step, the only one: the trainer, `smol bench train` and the parity check all
/// call it. The loss is the mean over every target that carries loss (targets of -1 carry none)
/// in all the step's micro-batches together, so a micro-batch with few counted tokens (an SFT
/// batch mostly prompt) weighs by its tokens, not as a whole micro-batch.
public final class TrainStep {
    public let model: LlamaModel
    public let optimizer: AdamW

    public init(model: LlamaModel, optimizer: AdamW) {
        self.model = model
        self.optimizer = optimizer
    }

    /// Targets that carry loss in `batches`.
    public static func countedTargets(_ batches: [TokenBatch]) -> Int {
        batches.reduce(0) { n, b in n + b.targets.reduce(0) { $0 + ($1 >= 0 ? 1 : 0) } }
    }

    /// Zeroes the gradients, then accumulates d(mean loss)/dθ over `microBatches`.
    /// Returns the mean loss and the number of counted targets (0 leaves the gradients zero).
    public func computeGradients(_ microBatches: [TokenBatch]) throws -> (loss: Double, counted: Int) {
        Profiler.time("zero_grad") { model.gradients.zero() }
        let counted = TrainStep.countedTargets(microBatches)
        let scale: Float = counted > 0 ? 1 / Float(counted) : 0
        var sum = 0.0
        for b in microBatches { sum += try model.forward(b, lossScale: scale, computeGradients: true).loss }
        return (counted > 0 ? sum / Double(counted) : 0, counted)
    }

    /// Clips by the global norm and applies AdamW at `lr`; returns the norm before clipping.
    @discardableResult
    public func update(lr: Double, gradientNorm: Double? = nil) -> Double {
        Profiler.time("adamw") { optimizer.update(parameters: model.parameters.values, gradients: model.gradients, lr: lr, gradientNorm: gradientNorm) }
    }

    /// The whole step: gradients, clip, AdamW. Returns (mean loss, counted targets, pre-clip norm).
    @discardableResult
    public func callAsFunction(_ microBatches: [TokenBatch], lr: Double) throws -> (loss: Double, counted: Int, gradNorm: Double) {
        let (loss, counted) = try computeGradients(microBatches)
        return (loss, counted, update(lr: lr))
    }
}
