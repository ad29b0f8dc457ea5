import XCTest
import SmolModel
import SmolTensor
@testable import SmolTrainer

final class ScheduleAndOptimizerTests: XCTestCase {
    func testWarmupThenCosineByHand() {
        var s = ScheduleConfig(); s.type = .cosine; s.warmupSteps = 4; s.minLrRatio = 0.1
        XCTAssertEqual(s.learningRate(step: 0, totalSteps: 14, peak: 1), 0.25, accuracy: 1e-12)
        XCTAssertEqual(s.learningRate(step: 3, totalSteps: 14, peak: 1), 1.0, accuracy: 1e-12)
        XCTAssertEqual(s.learningRate(step: 4, totalSteps: 14, peak: 1), 1.0, accuracy: 1e-12)      // progress 0
        XCTAssertEqual(s.learningRate(step: 9, totalSteps: 14, peak: 1), 0.55, accuracy: 1e-12)     // progress 1/2: 0.1 + 0.9·0.5
        XCTAssertEqual(s.learningRate(step: 14, totalSteps: 14, peak: 1), 0.1, accuracy: 1e-12)
    }

    func testWSDLinearAndSqrtDecayByHand() {
        var s = ScheduleConfig(); s.type = .wsd; s.warmupSteps = 2; s.decayFraction = 0.4; s.minLrRatio = 0
        // 10 steps: decay over the last 4 (steps 6..9), factor 1 − (k+1)/4
        let lin = (0..<10).map { s.learningRate(step: $0, totalSteps: 10, peak: 2) }
        XCTAssertEqual(lin, [1, 2, 2, 2, 2, 2, 1.5, 1.0, 0.5, 0.0])
        s.decayShape = .sqrt
        XCTAssertEqual(s.learningRate(step: 6, totalSteps: 10, peak: 2), 2 * (1 - 0.5), accuracy: 1e-12)   // 1 − sqrt(1/4)
        XCTAssertEqual(s.learningRate(step: 9, totalSteps: 10, peak: 2), 0, accuracy: 1e-12)
        s.type = .constant
        XCTAssertEqual(s.learningRate(step: 9, totalSteps: 10, peak: 2), 2)
    }

    func testAdamWOneStepByHandWithDecayExclusion() throws {
        let cfg = LlamaConfig(vocabSize: 4, hiddenSize: 2, numHiddenLayers: 1, numAttentionHeads: 1, intermediateSize: 2)
        let params = ParameterStore(config: cfg)
        var opt = OptimizerConfig(); opt.lr = 0.1; opt.weightDecay = 0.5; opt.gradClip = 0; opt.beta1 = 0.9; opt.beta2 = 0.99; opt.eps = 1e-8
        let adam = AdamW(config: opt, parameters: params)
        XCTAssertFalse(adam.decays[params.index["model.embed_tokens.weight"]!])
        XCTAssertFalse(adam.decays[params.index["model.norm.weight"]!])
        XCTAssertTrue(adam.decays[params.index["model.layers.0.mlp.up_proj.weight"]!])
        params.values.pointer.update(repeating: 1, count: params.count)
        let grads = FloatBuffer(count: params.count)
        grads.pointer.update(repeating: 0.5, count: params.count)
        adam.update(parameters: params.values, gradients: grads, lr: 0.1)
        // Step 1: m̂ = g, v̂ = g², update = lr · g/|g| = 0.1; decayed tensors also lose lr·wd·p = 0.05.
        let up = params.slot("model.layers.0.mlp.up_proj.weight"), emb = params.slot("model.embed_tokens.weight")
        XCTAssertEqual(params.values[up.offset], 1 - 0.05 - 0.1, accuracy: 1e-6)
        XCTAssertEqual(params.values[emb.offset], 1 - 0.1, accuracy: 1e-6)
    }

    func testClippingScalesToThreshold() {
        let cfg = LlamaConfig(vocabSize: 4, hiddenSize: 2, numHiddenLayers: 1, numAttentionHeads: 1, intermediateSize: 2)
        let params = ParameterStore(config: cfg)
        let grads = FloatBuffer(count: params.count)
        for s in params.slots { for j in 0..<s.count { grads[s.offset + j] = 3 } }
        let norm = (Double(params.parameterCount) * 9).squareRoot()
        XCTAssertEqual(AdamW.gradientNorm(grads), norm, accuracy: 1e-9 * norm)
        // With β1 = 0.5 the first moment after one step is 0.5 · (the gradient AdamW used), so it
        // shows the clip: PyTorch's scale clip / (norm + 1e-6) above the threshold, none below it.
        for (clip, scale) in [(1.0, 1.0 / (norm + 1e-6)), (norm * 2, 1.0)] {
            var opt = OptimizerConfig(); opt.gradClip = clip; opt.beta1 = 0.5; opt.weightDecay = 0
            let adam = AdamW(config: opt, parameters: params)
            let returned = adam.update(parameters: params.values, gradients: grads, lr: 1e-3)
            XCTAssertEqual(returned, norm, accuracy: 1e-9 * norm)   // the norm before clipping
            for s in params.slots {
                XCTAssertEqual(Double(adam.m[s.offset]), 0.5 * 3 * scale, accuracy: 1e-6 * 3 * scale, s.name)
            }
            let clipped = (0..<params.count).map { Double(adam.m[$0]) * 2 }
            XCTAssertEqual(clipped.map { $0 * $0 }.reduce(0, +).squareRoot(), min(norm, clip), accuracy: 1e-5 * min(norm, clip))
        }
    }

    func testRandomStreamsAreKeyedByPurposeAndCoordinates() {
        var a = RandomStream(seed: 1, purpose: "init", coordinates: [0, 0])
        var b = RandomStream(seed: 1, purpose: "init", coordinates: [0, 1])   // another TP rank
        var c = RandomStream(seed: 1, purpose: "init", coordinates: [0, 0])
        let xa = (0..<8).map { _ in a.nextUInt64() }, xb = (0..<8).map { _ in b.nextUInt64() }, xc = (0..<8).map { _ in c.nextUInt64() }
        XCTAssertNotEqual(xa, xb)
        XCTAssertEqual(xa, xc)
        XCTAssertNotEqual(RandomStream(seed: 1, purpose: "init").key, RandomStream(seed: 1, purpose: "data-order").key)
        // Normal draws: mean ≈ 0, variance ≈ 1 over 100k samples (5 standard errors).
        var r = RandomStream(seed: 9, purpose: "stats")
        let n = 100_000
        let xs = (0..<n).map { _ in Double(r.nextNormal()) }
        let mean = xs.reduce(0, +) / Double(n), variance = xs.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(n)
        XCTAssertEqual(mean, 0, accuracy: 5 / Double(n).squareRoot())
        XCTAssertEqual(variance, 1, accuracy: 5 * (2 / Double(n)).squareRoot())
    }

    func testParameterCountMatchesFormulaForSmolLM2() {
        // shared/reference: V h + per layer (h·HQ + 2h·KVQ + HQ·h + 3hF + 2h) + h, tied.
        let c = LlamaConfig(vocabSize: 49152, hiddenSize: 576, numHiddenLayers: 30, numAttentionHeads: 9,
                            numKeyValueHeads: 3, intermediateSize: 1536)
        let perLayer = 576 * 576 + 2 * 576 * 192 + 576 * 576 + 3 * 576 * 1536 + 2 * 576
        XCTAssertEqual(c.parameterCount, 49152 * 576 + 30 * perLayer + 576)
        XCTAssertEqual(c.parameterCount, 134_515_008)   // SmolLM2-135M's published count
        XCTAssertEqual(ParameterStore(config: c).parameterCount, c.parameterCount)
    }
}
