import Foundation

/// Preference objectives as trl's DPOTrainer defines them, on one pair's summed completion
/// log-probabilities under the policy and the frozen reference. With Δ = log π − log π_ref:
///   dpo       −log σ(β(Δ_w − Δ_l))
///   apo_zero  (1 − σ(βΔ_w)) + σ(βΔ_l)
///   apo_down  σ(βΔ_w) + (1 − σ(β(Δ_w − Δ_l)))
/// The loss's derivatives with respect to the two policy log-probabilities are what the backward
/// pass needs: each completion's tokens then carry a cross-entropy weight of −∂L/∂log π.
public enum PreferenceObjective: String, Codable, Sendable, CaseIterable {
    case dpo
    case apoZero = "apo_zero"
    case apoDown = "apo_down"
}

public struct PreferencePair: Equatable, Sendable {
    /// Σ log π over the completion's tokens, chosen and rejected, under the policy and the reference.
    public var policyChosen: Double, policyRejected: Double
    public var referenceChosen: Double, referenceRejected: Double
    public init(policyChosen: Double, policyRejected: Double, referenceChosen: Double, referenceRejected: Double) {
        self.policyChosen = policyChosen; self.policyRejected = policyRejected
        self.referenceChosen = referenceChosen; self.referenceRejected = referenceRejected
    }
}

public struct PreferenceLoss: Equatable, Sendable {
    public var loss: Double
    /// ∂loss/∂(policy log-prob of the chosen completion), and of the rejected one.
    public var dChosen: Double, dRejected: Double
    /// trl's implicit rewards β·Δ.
    public var rewardChosen: Double, rewardRejected: Double
    public var margin: Double { rewardChosen - rewardRejected }
    public var correct: Bool { rewardChosen > rewardRejected }

    static func sigmoid(_ x: Double) -> Double { x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)) }
    /// log σ(x) without overflow.
    static func logSigmoid(_ x: Double) -> Double { x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x)) }

    public init(_ p: PreferencePair, objective: PreferenceObjective, beta: Double) {
        let dw = p.policyChosen - p.referenceChosen, dl = p.policyRejected - p.referenceRejected
        rewardChosen = beta * dw; rewardRejected = beta * dl
        let s = PreferenceLoss.sigmoid
        switch objective {
        case .dpo:
            let z = beta * (dw - dl)
            loss = -PreferenceLoss.logSigmoid(z)
            let g = -beta * s(-z)          // d(−log σ(z))/dz = −σ(−z)
            dChosen = g; dRejected = -g
        case .apoZero:
            let sw = s(beta * dw), sl = s(beta * dl)
            loss = (1 - sw) + sl
            dChosen = -beta * sw * (1 - sw); dRejected = beta * sl * (1 - sl)
        case .apoDown:
            let sw = s(beta * dw), sm = s(beta * (dw - dl))
            loss = sw + (1 - sm)
            dChosen = beta * sw * (1 - sw) - beta * sm * (1 - sm); dRejected = beta * sm * (1 - sm)
        }
    }
}
