import Foundation
import SmolTensor

/// Error bars and significance for evaluation scores (../shared/reference/evaluation.md).
public enum Statistics {
    public static func mean(_ x: [Double]) -> Double { x.isEmpty ? .nan : x.reduce(0, +) / Double(x.count) }

    /// Sample standard deviation (n − 1 in the denominator).
    public static func sampleStd(_ x: [Double]) -> Double {
        guard x.count > 1 else { return 0 }
        let m = mean(x)
        return (x.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(x.count - 1)).squareRoot()
    }

    /// Standard error of a mean: s / √n.
    public static func standardError(_ x: [Double]) -> Double {
        x.count > 1 ? sampleStd(x) / Double(x.count).squareRoot() : 0
    }

    /// Bootstrap standard error of any statistic of n items: resample the item indices with
    /// replacement `resamples` times and take the standard deviation of the replicate values
    /// (not divided again by √B, a mistake one popular harness makes).
    public static func bootstrapStandardError(count n: Int, resamples: Int = 1000, seed: UInt64 = 1234,
                                              statistic: ([Int]) -> Double) -> Double {
        guard n > 1, resamples > 1 else { return 0 }
        var rng = RandomStream(seed: seed, purpose: "bootstrap")
        var replicates: [Double] = []
        replicates.reserveCapacity(resamples)
        var idx = [Int](repeating: 0, count: n)
        for _ in 0..<resamples {
            for i in 0..<n { idx[i] = rng.nextInt(below: n) }
            replicates.append(statistic(idx))
        }
        return sampleStd(replicates)
    }

    public enum Verdict: String, Codable, Sendable { case better, worse, notSignificant = "not significant" }

    public struct PairedComparison: Codable, Sendable {
        /// mean(a) − mean(b) over the shared items.
        public var difference: Double
        public var pValue: Double
        public var verdict: Verdict
        public var items: Int
        /// "exact" (all 2^m sign flips enumerated) or "monte carlo (N)".
        public var method: String
        enum CodingKeys: String, CodingKey { case difference, pValue = "p_value", verdict, items, method }
    }

    /// Paired sign-flip permutation test of per-item scores a and b of two models on the same
    /// items: under the null the sign of each difference is a coin flip. Two-sided p-value
    /// P(|mean of flipped differences| ≥ |observed|), enumerated exactly when at most 20 items
    /// differ, else from `permutations` seeded random flips ((count + 1) / (N + 1)).
    public static func pairedPermutationTest(_ a: [Double], _ b: [Double], alpha: Double = 0.05,
                                             permutations: Int = 20_000, seed: UInt64 = 1234) -> PairedComparison {
        precondition(a.count == b.count, "paired scores need the same items")
        let d = zip(a, b).map { $0 - $1 }
        let n = d.count
        let observed = n == 0 ? 0 : d.reduce(0, +)
        let nonzero = d.filter { $0 != 0 }
        // Compare sums (same n throughout) with a small tolerance for float ties.
        let target = abs(observed) - 1e-9 * max(1, abs(observed))
        var p: Double, method: String
        if nonzero.isEmpty {
            p = 1; method = "exact"
        } else if nonzero.count <= 20 {
            let m = nonzero.count
            var hits = 0
            for mask in 0..<(1 << m) {
                var s = 0.0
                for j in 0..<m { s += (mask >> j) & 1 == 1 ? -nonzero[j] : nonzero[j] }
                if abs(s) >= target { hits += 1 }
            }
            p = Double(hits) / Double(1 << m); method = "exact"
        } else {
            var rng = RandomStream(seed: seed, purpose: "permutation")
            var hits = 0
            for _ in 0..<permutations {
                var s = 0.0
                for x in nonzero { s += rng.nextUInt64() & 1 == 1 ? -x : x }
                if abs(s) >= target { hits += 1 }
            }
            p = Double(hits + 1) / Double(permutations + 1); method = "monte carlo (\(permutations))"
        }
        let diff = n == 0 ? 0 : observed / Double(n)
        let verdict: Verdict = p < alpha ? (diff > 0 ? .better : .worse) : .notSignificant
        return PairedComparison(difference: diff, pValue: p, verdict: verdict, items: n, method: method)
    }

    /// Cohen's κ between two raters' labels of the same items: (p_o − p_e) / (1 − p_e).
    public static func cohensKappa<L: Hashable>(_ a: [L], _ b: [L]) -> Double {
        precondition(a.count == b.count)
        guard !a.isEmpty else { return .nan }
        let n = Double(a.count)
        let po = Double(zip(a, b).filter { $0 == $1 }.count) / n
        var ca: [L: Int] = [:], cb: [L: Int] = [:]
        for x in a { ca[x, default: 0] += 1 }
        for x in b { cb[x, default: 0] += 1 }
        let pe = Set(a).union(b).reduce(0.0) { $0 + Double(ca[$1] ?? 0) / n * Double(cb[$1] ?? 0) / n }
        return pe == 1 ? 1 : (po - pe) / (1 - pe)
    }
}
