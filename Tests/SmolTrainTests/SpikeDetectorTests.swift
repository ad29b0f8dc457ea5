import XCTest
@testable import SmolTrainer

/// The spike rules on sequences worked out by hand.
final class SpikeDetectorTests: XCTestCase {
    func config(_ rule: StabilityConfig.Rule, window: Int, minSamples: Int) -> StabilityConfig {
        var c = StabilityConfig()
        c.rule = rule; c.window = window; c.minSamples = minSamples; c.sigmas = 2; c.factor = 2; c.consecutive = 2
        return c
    }

    func testOLMoRuleMeanPlusSigmas() {
        // Window (1, 3): mean 2, population σ 1, threshold 2 + 2·1 = 4.
        var d = SpikeDetector(config: config(.olmo, window: 2, minSamples: 2))
        XCTAssertNil(d.check(step: 1, loss: 1, gradNorm: 1))
        XCTAssertNil(d.check(step: 2, loss: 3, gradNorm: 1))
        XCTAssertNil(d.check(step: 3, loss: 4, gradNorm: 1))            // not above 4
        // Now the window is (3, 4): mean 3.5, σ 0.5, threshold 4.5.
        let s = d.check(step: 4, loss: 4.6, gradNorm: 1)
        XCTAssertEqual(s?.signal, "loss")
        XCTAssertEqual(s?.threshold ?? 0, 4.5, accuracy: 1e-12)
        // The spike stayed out of the window: the same threshold fires again.
        XCTAssertEqual(d.check(step: 5, loss: 4.6, gradNorm: 1)?.step, 5)
        // Grad norm alone: norms (1, 1) have σ 0, so anything above 1 fires.
        XCTAssertEqual(d.check(step: 6, loss: 3.5, gradNorm: 1.5)?.signal, "grad_norm")
        XCTAssertEqual(d.check(step: 7, loss: .nan, gradNorm: 1)?.signal, "non-finite")
    }

    func testOLMoWaitsForMinSamples() {
        var d = SpikeDetector(config: config(.olmo, window: 8, minSamples: 3))
        XCTAssertNil(d.check(step: 1, loss: 1, gradNorm: 1))
        XCTAssertNil(d.check(step: 2, loss: 1, gradNorm: 1))
        XCTAssertNil(d.check(step: 3, loss: 100, gradNorm: 1))         // only 2 samples so far
    }

    func testFoundryRuleNeedsConsecutiveSteps() {
        // Window mean 2 → threshold 4; two consecutive steps at or above it fire on the second.
        var d = SpikeDetector(config: config(.foundry, window: 4, minSamples: 2))
        XCTAssertNil(d.check(step: 1, loss: 2, gradNorm: 1))
        XCTAssertNil(d.check(step: 2, loss: 2, gradNorm: 1))
        XCTAssertNil(d.check(step: 3, loss: 4, gradNorm: 1))           // first of the run
        XCTAssertNil(d.check(step: 4, loss: 3, gradNorm: 1))           // broken: back below
        XCTAssertNil(d.check(step: 5, loss: 5, gradNorm: 1))
        let s = d.check(step: 6, loss: 6, gradNorm: 1)
        XCTAssertEqual(s?.step, 6)
        XCTAssertEqual(s?.threshold ?? 0, 2 * (2 + 2 + 3) / 3, accuracy: 1e-12)   // window (2, 2, 3)
    }

    func testBaselineGuardInterpolatesAndCountsStreaks() {
        var c = BaselineConfig(); c.curve = "x"; c.tolerance = 0.1; c.patience = 2
        var g = BaselineGuard(config: c, curve: [(0, 4.0), (100, 2.0)])
        XCTAssertEqual(g.baseline(at: 50) ?? 0, 3.0, accuracy: 1e-12)
        XCTAssertNil(g.baseline(at: 150))
        XCTAssertEqual(g.check(step: 1, tokens: 50, value: 3.3)?.worse, false)     // 3.3 ≤ 3.0 · 1.1
        let a = g.check(step: 2, tokens: 50, value: 3.31)!
        XCTAssertTrue(a.worse && !a.alert)
        XCTAssertTrue(g.check(step: 3, tokens: 100, value: 2.3)!.alert)          // 2.3 > 2.2, second in a row
        // Scores: higher is better.
        var s = BaselineConfig(); s.curve = "x"; s.metric = "task/acc"; s.tolerance = 0.1; s.patience = 1
        var h = BaselineGuard(config: s, curve: [(0, 0.5), (10, 0.5)])
        XCTAssertEqual(h.check(step: 1, tokens: 5, value: 0.46)?.alert, false)
        XCTAssertEqual(h.check(step: 2, tokens: 5, value: 0.44)?.alert, true)
    }
}
