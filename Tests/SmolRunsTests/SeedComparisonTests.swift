import XCTest
@testable import SmolRuns

/// Student's t and the ablation tests against closed forms worked by hand: with 1 degree of
/// freedom t is Cauchy, F(t) = 1/2 + atan(t)/π; with 2, F(t) = 1/2 + t / (2√(2 + t²)).
final class SeedComparisonTests: XCTestCase {
    func testCDFMatchesClosedForms() {
        for t in [-30.0, -3, -1, -0.25, 0, 0.5, 2, 7.5, 100] {
            XCTAssertEqual(StudentT.cdf(t, df: 1), 0.5 + atan(t) / .pi, accuracy: 1e-12, "df 1, t \(t)")
            XCTAssertEqual(StudentT.cdf(t, df: 2), 0.5 + t / (2 * (2 + t * t).squareRoot()), accuracy: 1e-12, "df 2, t \(t)")
        }
        // Large df tends to the normal: Φ(1.959964) = 0.975.
        XCTAssertEqual(StudentT.cdf(1.959964, df: 1e7), 0.975, accuracy: 1e-6)
    }

    func testQuantiles() {
        // df 2: t/√(2+t²) = 2p − 1  ⇒  t² = 2q²/(1 − q²), q = 0.95 → t = √(1.805/0.0975) = 4.302653
        XCTAssertEqual(StudentT.quantile(0.975, df: 2), (1.805 / 0.0975).squareRoot(), accuracy: 1e-9)
        XCTAssertEqual(StudentT.quantile(0.975, df: 1), tan(.pi * 0.475), accuracy: 1e-8)   // 12.7062
        XCTAssertEqual(StudentT.quantile(0.025, df: 2), -(1.805 / 0.0975).squareRoot(), accuracy: 1e-9)
        for df in [1.0, 2.5, 7.3, 30] { for p in [0.6, 0.8, 0.975, 0.999] {
            XCTAssertEqual(StudentT.cdf(StudentT.quantile(p, df: df), df: df), p, accuracy: 1e-12)
        } }
    }

    func testPairedByHand() {
        // Baseline 5.0, 5.2, 5.4; variant 4.8, 5.1, 5.2 on the same seeds: d = −0.2, −0.1, −0.2,
        // mean −1/6, sd √(3/900), SE = sd/√3 = 1/30, t = −5, 2 d.o.f., p = 1 − 5/√27.
        let b: [(seed: UInt64, value: Double)] = [(1, 5.0), (2, 5.2), (3, 5.4)]
        let v: [(seed: UInt64, value: Double)] = [(3, 5.2), (1, 4.8), (2, 5.1)]   // order doesn't matter; seeds pair
        let c = SeedComparison.compare(variant: v, baseline: b)!
        XCTAssertEqual(c.test, "paired")
        XCTAssertEqual(c.difference, -1.0 / 6, accuracy: 1e-12)
        XCTAssertEqual(c.standardError, 1.0 / 30, accuracy: 1e-12)
        XCTAssertEqual(c.t, -5, accuracy: 1e-9)
        XCTAssertEqual(c.degreesOfFreedom, 2)
        XCTAssertEqual(c.pValue, 1 - 5 / 27.0.squareRoot(), accuracy: 1e-12)
        // (t₀.₉₇₅ + t₀.₈) · SE with 2 d.o.f.: t₀.₈ = √(2·0.36/0.64) = 1.06066
        XCTAssertEqual(c.minDetectable, ((1.805 / 0.0975).squareRoot() + (0.72 / 0.64).squareRoot()) / 30, accuracy: 1e-9)
        // The unpaired test on the same numbers sees only the spread across seeds: not significant.
        let welch = SeedComparison.compare(variant: v.map { ($0.seed + 10, $0.value) }, baseline: b)!
        XCTAssertEqual(welch.test, "welch")
        XCTAssertGreaterThan(welch.pValue, 0.2)
    }

    func testWelchByHand() {
        // Variant 1, 3 (mean 2, s² 2) against baseline 0, 0, 3 (mean 1, s² 3) on other seeds:
        // SE² = 2/2 + 3/3 = 2, t = 1/√2, df = 2² / (1²/1 + 1²/2) = 4/1.5 = 8/3.
        let c = SeedComparison.compare(variant: [(1, 1), (2, 3)], baseline: [(5, 0), (6, 0), (7, 3)])!
        XCTAssertEqual(c.test, "welch")
        XCTAssertEqual(c.difference, 1, accuracy: 1e-12)
        XCTAssertEqual(c.standardError, 2.0.squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(c.degreesOfFreedom, 8.0 / 3, accuracy: 1e-12)
        XCTAssertEqual(c.pValue, 2 * (1 - StudentT.cdf(1 / 2.0.squareRoot(), df: 8.0 / 3)), accuracy: 1e-12)
    }

    func testEdgeCases() {
        // One seed: no noise estimate.
        XCTAssertNil(SeedComparison.compare(variant: [(1, 2)], baseline: [(1, 1)]))
        // Identical runs: no difference, p = 1; a constant difference: p = 0.
        let same = SeedComparison.compare(variant: [(1, 2), (2, 3)], baseline: [(1, 2), (2, 3)])!
        XCTAssertEqual(same.pValue, 1); XCTAssertNil(same.seedsToDetect)
        let shifted = SeedComparison.compare(variant: [(1, 2.5), (2, 3.5)], baseline: [(1, 2), (2, 3)])!
        XCTAssertEqual(shifted.pValue, 0); XCTAssertEqual(shifted.seedsToDetect, 2)
        // A large noisy difference needs more seeds than it has; the count it reports does detect it.
        let noisy = SeedComparison.compare(variant: [(1, 0.3), (2, -0.1), (3, 0.5)], baseline: [(1, 0), (2, 0), (3, 0)])!
        XCTAssertGreaterThan(noisy.pValue, 0.05)
        let n = noisy.seedsToDetect!
        XCTAssertGreaterThan(n, 3)
        let sd = 0.305505, d = 0.7 / 3   // sd of (0.3, −0.1, 0.5)
        let q = StudentT.quantile(0.975, df: Double(n - 1)) + StudentT.quantile(0.8, df: Double(n - 1))
        XCTAssertLessThanOrEqual(q * sd / Double(n).squareRoot(), d * 1.0001)
        let qLess = StudentT.quantile(0.975, df: Double(n - 2)) + StudentT.quantile(0.8, df: Double(n - 2))
        XCTAssertGreaterThan(qLess * sd / Double(n - 1).squareRoot(), d)
    }
}
