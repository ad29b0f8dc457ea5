import Foundation
import SmolModel
import SmolTensor

/// A preference micro-batch holds one pair per row: the chosen conversation from position 0, the
/// rejected one after it as a second document (its positions' document start > 0), then padding.
/// Only the completion's tokens carry loss, so a document's summed −loss is log π of its completion.
public enum PreferenceBatch {
    /// Whether position i of `b` belongs to its row's first document (the chosen completion).
    static func isChosen(_ b: TokenBatch, _ i: Int) -> Bool { (b.documentStart?[i] ?? 0) == 0 }
    /// Σ log π over each row's chosen and rejected completion tokens, from the forward's per-token
    /// losses; nil for a row without loss tokens in both parts (padding rows of an evaluation chunk).
    public static func logProbs(_ tokenLosses: UnsafeBufferPointer<Float>, batch b: TokenBatch) -> [(chosen: Double, rejected: Double)?] {
        (0..<b.batch).map { row in
            var chosen = 0.0, rejected = 0.0, nc = 0, nr = 0
            for i in (row * b.seqLen)..<((row + 1) * b.seqLen) where b.targets[i] >= 0 {
                if isChosen(b, i) { chosen -= Double(tokenLosses[i]); nc += 1 } else { rejected -= Double(tokenLosses[i]); nr += 1 }
            }
            return nc > 0 && nr > 0 ? (chosen, rejected) : nil
        }
    }

    /// Pairs in `batches` that carry loss (rows with loss tokens in both parts).
    public static func pairCount(_ batches: [TokenBatch]) -> Int {
        batches.reduce(0) { n, b in
            n + (0..<b.batch).filter { row in
                var chosen = false, rejected = false
                for i in (row * b.seqLen)..<((row + 1) * b.seqLen) where b.targets[i] >= 0 {
                    if isChosen(b, i) { chosen = true } else { rejected = true }
                }
                return chosen && rejected
            }.count
        }
    }

    /// Scores every pair of `b` and, when `weights` is given, sets each completion token's loss
    /// weight to −∂loss/∂log π of its completion (the backward then yields ∂(Σ pair losses)/∂θ).
    public static func score(_ tokenLosses: UnsafeBufferPointer<Float>, batch b: TokenBatch, objective: PreferenceObjective, beta: Double,
                             weights: UnsafeMutableBufferPointer<Float>? = nil) -> PreferenceStats {
        guard let reference = b.referenceLogProbs, reference.count == 2 * b.batch else {
            preconditionFailure("a preference batch carries the reference log-probs of its pairs")
        }
        var stats = PreferenceStats()
        for (row, policy) in logProbs(tokenLosses, batch: b).enumerated() {
            let range = (row * b.seqLen)..<((row + 1) * b.seqLen)
            guard let policy else {
                if let weights { for i in range { weights[i] = 0 } }
                continue
            }
            let pair = PreferencePair(policyChosen: policy.chosen, policyRejected: policy.rejected,
                                      referenceChosen: reference[2 * row], referenceRejected: reference[2 * row + 1])
            let loss = PreferenceLoss(pair, objective: objective, beta: beta)
            stats.add(pair, loss)
            if let weights {
                for i in range {
                    weights[i] = b.targets[i] < 0 ? 0 : Float(isChosen(b, i) ? -loss.dChosen : -loss.dRejected)
                }
            }
        }
        return stats
    }
}

/// Sums over pairs of what trl's DPOTrainer logs; `metrics` gives its means under trl's names.
public struct PreferenceStats: Codable, Equatable, Sendable {
    public var pairs = 0.0, loss = 0.0
    public var rewardChosen = 0.0, rewardRejected = 0.0
    /// Pairs whose chosen reward is above the rejected one (trl's accuracy: a tie counts 0).
    public var correct = 0.0
    public var logProbChosen = 0.0, logProbRejected = 0.0
    public init() {}

    mutating func add(_ p: PreferencePair, _ l: PreferenceLoss) {
        pairs += 1; loss += l.loss
        rewardChosen += l.rewardChosen; rewardRejected += l.rewardRejected
        correct += l.correct ? 1 : 0
        logProbChosen += p.policyChosen; logProbRejected += p.policyRejected
    }
    public static func + (a: PreferenceStats, b: PreferenceStats) -> PreferenceStats {
        PreferenceStats(zip(a.asArray, b.asArray).map(+))
    }
    var asArray: [Double] { [pairs, loss, rewardChosen, rewardRejected, correct, logProbChosen, logProbRejected] }
    init(_ a: [Double]) {
        (pairs, loss, rewardChosen, rewardRejected, correct, logProbChosen, logProbRejected) = (a[0], a[1], a[2], a[3], a[4], a[5], a[6])
    }

    /// Means over the pairs, as trl names them.
    public var metrics: [String: Double] {
        guard pairs > 0 else { return [:] }
        return ["rewards/chosen": rewardChosen / pairs, "rewards/rejected": rewardRejected / pairs,
                "rewards/margins": (rewardChosen - rewardRejected) / pairs, "rewards/accuracies": correct / pairs,
                "logps/chosen": logProbChosen / pairs, "logps/rejected": logProbRejected / pairs]
    }

    /// Sums over the ranks of a data-parallel world.
    public func allReduced(_ c: Collectives) throws -> PreferenceStats {
        guard c.size > 1 else { return self }
        return PreferenceStats(try asArray.map { try c.allReduce($0, op: .sum) })
    }
}
