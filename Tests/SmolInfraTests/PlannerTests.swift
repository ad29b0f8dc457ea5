import XCTest
import SmolModel
@testable import SmolInfra
@testable import SmolTrainer

/// The planner against cases computed by hand from shared/reference/infrastructure.md.
final class PlannerTests: XCTestCase {
    let smollm3 = LlamaConfig(vocabSize: 128_256, hiddenSize: 2048, numHiddenLayers: 36, numAttentionHeads: 16,
                              numKeyValueHeads: 4, intermediateSize: 11_008, tieWordEmbeddings: true)

    func testDalyMatchesItsPublishedExamples() {
        // δ = 5 min: M = 24 h → 117 min; 6 h → 57 min; 15 min → 9.1 min.
        XCTAssertEqual(Planner.daly(delta: 5, mtbf: 24 * 60), 117, accuracy: 0.5)
        XCTAssertEqual(Planner.daly(delta: 5, mtbf: 6 * 60), 57, accuracy: 0.5)
        XCTAssertEqual(Planner.daly(delta: 5, mtbf: 15), 9.1, accuracy: 0.05)
        XCTAssertEqual(Planner.daly(delta: 40, mtbf: 15), 15)            // δ ≥ 2M → M
        XCTAssertEqual(Planner.young(delta: 5, mtbf: 24 * 60), (2.0 * 5 * 1440).squareRoot(), accuracy: 1e-9)
    }

    func testParameterCountsByHand() {
        // SmolLM3: V·h + 36·(h·HQ + 2h·KVQ + HQ·h + 3hF + 2h) + h
        let perLayer = 2048 * 2048 + 2 * 2048 * 512 + 2048 * 2048 + 3 * 2048 * 11_008 + 2 * 2048
        XCTAssertEqual(smollm3.parameterCount, 128_256 * 2048 + 36 * perLayer + 2048)
        XCTAssertEqual(smollm3.parameterCount, 3_075_098_624)
        // Our shipped configs: the planner's count equals what the engine allocates.
        for name in ["demo", "tiny", "smollm2-135m"] {
            let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent("configs/\(name).yaml").path
            let model = try! TrainConfig.loadModel(path: path)
            XCTAssertEqual(ParameterStore(config: model).parameterCount, model.parameterCount, name)
            XCTAssertEqual(Planner.plan(PlanInput(model: model, tokens: 1e9, accelerator: Accelerator.known[0])).parameters,
                           model.parameterCount, name)
        }
    }

    func testSmolLM3WorkedExample() {
        var input = PlanInput(model: smollm3, tokens: 11e12, accelerator: Accelerator.known.first { $0.name == "h100" }!)
        input.dataParallel = 192; input.tensorParallel = 2; input.microBatch = 3; input.seqLen = 4096; input.mfu = 0.30
        let p = Planner.plan(input)
        XCTAssertEqual(p.devices, 384)
        XCTAssertEqual(p.tokensPerStep, 192 * 3 * 4096)                      // ≈ 2.36M
        let flopsPerToken = 6 * 3_075_098_624.0 + 12 * 36 * 16 * 128 * 4096.0
        XCTAssertEqual(p.flopsPerToken, flopsPerToken, accuracy: 1)
        let seconds = flopsPerToken * 11e12 / (384 * 989e12 * 0.30)
        XCTAssertEqual(p.seconds, seconds, accuracy: 1e-6 * seconds)
        XCTAssertEqual(p.days / 7, 3.5, accuracy: 0.1)                       // "about four weeks"
        XCTAssertEqual(p.deviceHours, seconds / 3600 * 384, accuracy: 1)
    }

    func testMemoryByHand() {
        // 1B-like shape on 8 GPUs, ZeRO-1, no TP: states = 2N + 2N + 12N/8 bytes.
        let model = LlamaConfig(vocabSize: 32_000, hiddenSize: 2048, numHiddenLayers: 16, numAttentionHeads: 32, intermediateSize: 8192)
        let n = Double(model.parameterCount)
        var input = PlanInput(model: model, tokens: 1e9, accelerator: Accelerator.known[0])
        input.dataParallel = 8; input.zeroStage = 1; input.microBatch = 2; input.seqLen = 2048
        let m = Planner.plan(input).memoryPerDevice
        XCTAssertEqual(m.weightsGB, 2 * n / 1e9, accuracy: 1e-9)
        XCTAssertEqual(m.gradientsGB, 2 * n / 1e9, accuracy: 1e-9)
        XCTAssertEqual(m.optimizerGB, 12 * n / 8 / 1e9, accuracy: 1e-9)
        // Korthikanti, t = 1: s·b·h·(34 + 5·a·s/h) per layer.
        let sbh: Double = 2048 * 2 * 2048
        let attentionTerm: Double = 5 * 32 * 2048 / 2048
        let perLayer: Double = sbh * (34 + attentionTerm)
        XCTAssertEqual(m.activationsNoRecomputeGB, 16 * perLayer / 1e9, accuracy: 1e-9)
        XCTAssertEqual(m.activationsSelectiveGB, 16 * sbh * 34 / 1e9, accuracy: 1e-9)
        input.zeroStage = 3
        XCTAssertEqual(Planner.plan(input).memoryPerDevice.weightsGB, 2 * n / 8 / 1e9, accuracy: 1e-9)
    }
}
