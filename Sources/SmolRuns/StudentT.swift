import Foundation

/// Student's t distribution: the CDF through the regularized incomplete beta function, and its
/// quantiles by bisection, for any positive (also fractional, as Welch's test gives) degrees of
/// freedom.
public enum StudentT {
    /// P(T ≤ t) with `df` degrees of freedom.
    public static func cdf(_ t: Double, df: Double) -> Double {
        precondition(df > 0)
        if t.isNaN { return .nan }
        if t.isInfinite { return t > 0 ? 1 : 0 }
        let tail = 0.5 * regularizedIncompleteBeta(df / (df + t * t), a: df / 2, b: 0.5)   // P(T > |t|)
        return t >= 0 ? 1 - tail : tail
    }

    /// P(|T| ≥ |t|): the two-sided p-value of a t statistic.
    public static func twoSidedP(_ t: Double, df: Double) -> Double {
        if t.isNaN { return .nan }
        if t.isInfinite { return 0 }
        return min(1, regularizedIncompleteBeta(df / (df + t * t), a: df / 2, b: 0.5))
    }

    /// The t with P(T ≤ t) = p.
    public static func quantile(_ p: Double, df: Double) -> Double {
        precondition(p > 0 && p < 1 && df > 0)
        if p == 0.5 { return 0 }
        if p < 0.5 { return -quantile(1 - p, df: df) }
        var lo = 0.0, hi = 1.0
        while cdf(hi, df: df) < p { hi *= 2 }
        for _ in 0..<200 {   // bisection to machine precision; cheap next to a training run
            let mid = (lo + hi) / 2
            if mid == lo || mid == hi { break }
            if cdf(mid, df: df) < p { lo = mid } else { hi = mid }
        }
        return (lo + hi) / 2
    }

    /// I_x(a, b), by the continued fraction (modified Lentz), on the side where it converges fast.
    static func regularizedIncompleteBeta(_ x: Double, a: Double, b: Double) -> Double {
        if x <= 0 { return 0 }
        if x >= 1 { return 1 }
        let logBeta: Double = lgamma(a + b) - lgamma(a) - lgamma(b)
        let logFront: Double = logBeta + a * log(x) + b * log(1 - x)
        if x < (a + 1) / (a + b + 2) {
            return exp(logFront) * continuedFraction(x, a: a, b: b) / a
        }
        return 1 - exp(logFront) * continuedFraction(1 - x, a: b, b: a) / b
    }

    private static func continuedFraction(_ x: Double, a: Double, b: Double) -> Double {
        let tiny = 1e-300, eps = 1e-16
        var c = 1.0, d = 1 - (a + b) * x / (a + 1)
        if abs(d) < tiny { d = tiny }
        d = 1 / d
        var h = d
        for m in 1...10_000 {
            let m = Double(m), m2 = 2 * m
            // even step
            var num = m * (b - m) * x / ((a + m2 - 1) * (a + m2))
            d = 1 + num * d; if abs(d) < tiny { d = tiny }
            c = 1 + num / c; if abs(c) < tiny { c = tiny }
            d = 1 / d; h *= d * c
            // odd step
            num = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1))
            d = 1 + num * d; if abs(d) < tiny { d = tiny }
            c = 1 + num / c; if abs(c) < tiny { c = tiny }
            d = 1 / d
            let delta = d * c
            h *= delta
            if abs(delta - 1) < eps { break }
        }
        return h
    }
}

/// The comparison of a variant with its baseline over seeds: a paired t-test on the per-seed
/// differences when both ran the same seeds (same seed, same initialisation and data order, so the
/// common noise cancels), Welch's unpaired t-test otherwise.
public struct SeedComparison: Codable, Sendable, Equatable {
    /// "paired" or "welch"
    public var test: String
    /// variant mean − baseline mean (for paired: the mean of the per-seed differences; the same number)
    public var difference: Double
    public var standardError: Double
    public var t: Double
    public var degreesOfFreedom: Double
    /// Two-sided.
    public var pValue: Double
    /// The smallest true difference this many seeds detect with 80% power at α = 0.05, at the
    /// measured noise: (t₀.₉₇₅ + t₀.₈₀) · SE.
    public var minDetectable: Double
    /// Seeds (per variant) needed to detect the observed difference with 80% power at the measured
    /// noise; nil when the difference is zero or would need more than 1,000.
    public var seedsToDetect: Int?

    enum CodingKeys: String, CodingKey {
        case test, difference, t
        case standardError = "stderr", degreesOfFreedom = "df", pValue = "p_value", minDetectable = "min_detectable"
        case seedsToDetect = "seeds_to_detect"
    }

    public static let alpha = 0.05, power = 0.8

    /// nil when there is no noise estimate (fewer than two values on a side, or two paired).
    public static func compare(variant: [(seed: UInt64, value: Double)], baseline: [(seed: UInt64, value: Double)]) -> SeedComparison? {
        func mean(_ x: [Double]) -> Double { x.reduce(0, +) / Double(x.count) }
        func variance(_ x: [Double]) -> Double { let m = mean(x); return x.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(x.count - 1) }
        func multiplier(_ df: Double) -> Double {
            StudentT.quantile(1 - alpha / 2, df: df) + StudentT.quantile(power, df: df)
        }
        /// `at(n)`: the standard error and degrees of freedom the same noise would give with n seeds.
        func result(_ test: String, _ d: Double, _ se: Double, _ df: Double, at: (Int) -> (se: Double, df: Double)) -> SeedComparison {
            let t = se > 0 ? d / se : (d == 0 ? 0 : (d > 0 ? .infinity : -.infinity))
            let p = se > 0 ? StudentT.twoSidedP(t, df: df) : (d == 0 ? 1 : 0)
            var needed: Int?
            if d != 0 {
                needed = (2...1000).first { n in let (se, df) = at(n); return multiplier(df) * se <= abs(d) }
            }
            return SeedComparison(test: test, difference: d, standardError: se, t: t, degreesOfFreedom: df, pValue: p,
                                  minDetectable: multiplier(df) * se, seedsToDetect: needed)
        }
        let vSeeds = variant.map(\.seed), bSeeds = baseline.map(\.seed)
        if Set(vSeeds) == Set(bSeeds), vSeeds.count == Set(vSeeds).count, vSeeds.count >= 2 {
            let byBaseline = Dictionary(uniqueKeysWithValues: baseline.map { ($0.seed, $0.value) })
            let d = variant.map { $0.value - byBaseline[$0.seed]! }
            let sd = variance(d).squareRoot(), n = Double(d.count)
            return result("paired", mean(d), sd / n.squareRoot(), n - 1) { (sd / Double($0).squareRoot(), Double($0 - 1)) }
        }
        let v = variant.map(\.value), b = baseline.map(\.value)
        guard v.count >= 2, b.count >= 2 else { return nil }
        let sv = variance(v) / Double(v.count), sb = variance(b) / Double(b.count)
        let se = (sv + sb).squareRoot()
        // Welch–Satterthwaite; with no spread on either side fall back to the smaller side's count.
        let df = sv + sb > 0 ? (sv + sb) * (sv + sb) / (sv * sv / Double(v.count - 1) + sb * sb / Double(b.count - 1))
                             : Double(min(v.count, b.count) - 1)
        let pooled = (variance(v) + variance(b)) / 2
        return result("welch", mean(v) - mean(b), se, df) { ((2 * pooled / Double($0)).squareRoot(), Double(2 * $0 - 2)) }
    }
}
