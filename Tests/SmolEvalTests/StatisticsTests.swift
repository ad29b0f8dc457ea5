import XCTest
@testable import SmolEval

/// Statistics and answer normalisation on cases computed by hand.
final class StatisticsTests: XCTestCase {
    func testStandardErrorOfMean() {
        // mean 0.75, sample variance ((3 × 0.0625) + 0.5625) / 3 = 0.25, s = 0.5, s/√4 = 0.25
        XCTAssertEqual(Statistics.standardError([1, 0, 1, 1]), 0.25, accuracy: 1e-15)
        XCTAssertEqual(Statistics.standardError([2]), 0)
    }

    func testExactSignFlipPValues() {
        // Five items all better by 1: only the all-plus and all-minus flips reach |sum| = 5 → 2/32.
        let five = Statistics.pairedPermutationTest([1, 1, 1, 1, 1], [0, 0, 0, 0, 0])
        XCTAssertEqual(five.pValue, 2.0 / 32, accuracy: 1e-15)
        XCTAssertEqual(five.verdict, .notSignificant)
        XCTAssertEqual(five.method, "exact")
        // Six: 2/64 < 0.05, the first model is better.
        let six = Statistics.pairedPermutationTest([1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0])
        XCTAssertEqual(six.pValue, 2.0 / 64, accuracy: 1e-15)
        XCTAssertEqual(six.verdict, .better)
        XCTAssertEqual(Statistics.pairedPermutationTest([0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1]).verdict, .worse)
        // Differences (1, −1, 1, 1), sum 2: |sum| ≥ 2 for sums ±4 (2 patterns) and ±2 (8) → 10/16.
        XCTAssertEqual(Statistics.pairedPermutationTest([1, 0, 1, 1], [0, 1, 0, 0]).pValue, 10.0 / 16, accuracy: 1e-15)
        // Identical scores: nothing to test.
        XCTAssertEqual(Statistics.pairedPermutationTest([1, 0], [1, 0]).pValue, 1)
    }

    func testMonteCarloPermutationAgreesWithNormalApproximation() {
        // 100 items, 30 better and 10 worse: z = 20 / √40 = 3.16, two-sided p ≈ 0.0016.
        let a = [Double](repeating: 1, count: 30) + [Double](repeating: 0, count: 10) + [Double](repeating: 1, count: 60)
        let b = [Double](repeating: 0, count: 30) + [Double](repeating: 1, count: 10) + [Double](repeating: 1, count: 60)
        let c = Statistics.pairedPermutationTest(a, b)
        XCTAssertTrue(c.method.hasPrefix("monte carlo"))
        XCTAssertLessThan(c.pValue, 0.01)
        XCTAssertEqual(c.verdict, .better)
        XCTAssertEqual(c.difference, 0.2, accuracy: 1e-15)
    }

    func testBootstrapStandardError() {
        // A constant statistic has no spread.
        XCTAssertEqual(Statistics.bootstrapStandardError(count: 10) { _ in 3 }, 0)
        // The mean of 100 fair coin flips: √(p(1 − p)/n) = 0.05 (bootstrap is within a few %).
        let x = (0..<100).map { Double($0 % 2) }
        let se = Statistics.bootstrapStandardError(count: 100, resamples: 4000, seed: 7) { idx in idx.reduce(0) { $0 + x[$1] } / 100 }
        XCTAssertEqual(se, 0.05, accuracy: 0.004)
        // Same seed, same replicates.
        XCTAssertEqual(se, Statistics.bootstrapStandardError(count: 100, resamples: 4000, seed: 7) { idx in idx.reduce(0) { $0 + x[$1] } / 100 })
    }

    func testCohensKappa() {
        // p_o = 3/4; p_e = 0.5 × 0.25 + 0.5 × 0.75 = 0.5 → κ = 0.5
        XCTAssertEqual(Statistics.cohensKappa([1, 1, 0, 0], [1, 0, 0, 0]), 0.5, accuracy: 1e-15)
        XCTAssertEqual(Statistics.cohensKappa(["a", "b", "c"], ["a", "b", "c"]), 1)
    }

    func testArabicAndEnglishNormalisation() {
        let arabic = AnswerNormalizer(arabic: ArabicNormalization(enabled: true, foldTaMarbuta: true, foldAlefMaqsura: true))
        // tashkeel and tatweel go, alef forms unify, ta marbuta → ha, alef maqsura → ya, Arabic comma and question mark are punctuation
        XCTAssertEqual(arabic.normalize("مَدْرَسَة"), "مدرسه")
        XCTAssertEqual(arabic.normalize("أحمد، إيمان وآمنة؟"), "احمد ايمان وامنه")
        XCTAssertEqual(arabic.normalize("مصطفى"), "مصطفي")
        XCTAssertEqual(arabic.normalize("كـــتاب"), "كتاب")
        let plain = AnswerNormalizer(arabic: ArabicNormalization(enabled: true))
        XCTAssertEqual(plain.normalize("مدرسة"), "مدرسة")   // folding of ta marbuta is optional
        let english = AnswerNormalizer()
        XCTAssertEqual(english.normalize("  The Eiffel-Tower!! "), "eiffel tower")
        XCTAssertEqual(english.normalize("ﬁve"), "five")   // NFKC
        XCTAssertEqual(english.f1(prediction: "the cat sat", reference: "cat sat down"), 0.8, accuracy: 1e-15)
        XCTAssertEqual(Evaluator.majority(["b", "a", "a", "b"]), "b")
    }
}
