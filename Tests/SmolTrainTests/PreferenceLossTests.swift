import XCTest
@testable import SmolTrainer

/// The preference losses against values worked by hand at Δ = 0 (σ(0) = 1/2, σ'(0) = 1/4) and
/// their derivatives against central finite differences elsewhere.
final class PreferenceLossTests: XCTestCase {
    func testValuesAtTheReference() {
        let p = PreferencePair(policyChosen: -12, policyRejected: -15, referenceChosen: -12, referenceRejected: -15)
        let beta = 0.1
        let dpo = PreferenceLoss(p, objective: .dpo, beta: beta)
        XCTAssertEqual(dpo.loss, log(2), accuracy: 1e-15)
        XCTAssertEqual(dpo.dChosen, -beta / 2, accuracy: 1e-15)
        XCTAssertEqual(dpo.dRejected, beta / 2, accuracy: 1e-15)
        XCTAssertFalse(dpo.correct)   // equal rewards: not counted as right, as trl counts it
        let zero = PreferenceLoss(p, objective: .apoZero, beta: beta)
        XCTAssertEqual(zero.loss, 1, accuracy: 1e-15)
        XCTAssertEqual(zero.dChosen, -beta / 4, accuracy: 1e-15)
        XCTAssertEqual(zero.dRejected, beta / 4, accuracy: 1e-15)
        let down = PreferenceLoss(p, objective: .apoDown, beta: beta)
        XCTAssertEqual(down.loss, 1, accuracy: 1e-15)
        XCTAssertEqual(down.dChosen, 0, accuracy: 1e-15)
        XCTAssertEqual(down.dRejected, beta / 4, accuracy: 1e-15)
    }

    func testDerivativesMatchFiniteDifferences() {
        let h = 1e-6
        for objective in PreferenceObjective.allCases {
            for (w, l) in [(-10.0, -14.0), (-20.0, -9.0), (-3.0, -3.5), (-200.0, -1.0)] {
                let beta = 0.5
                func loss(_ w: Double, _ l: Double) -> Double {
                    PreferenceLoss(PreferencePair(policyChosen: w, policyRejected: l, referenceChosen: -11, referenceRejected: -12),
                                   objective: objective, beta: beta).loss
                }
                let r = PreferenceLoss(PreferencePair(policyChosen: w, policyRejected: l, referenceChosen: -11, referenceRejected: -12),
                                       objective: objective, beta: beta)
                XCTAssertTrue(r.loss.isFinite, "\(objective) \(w) \(l)")
                XCTAssertEqual(r.dChosen, (loss(w + h, l) - loss(w - h, l)) / (2 * h), accuracy: 1e-7, "\(objective) \(w) \(l)")
                XCTAssertEqual(r.dRejected, (loss(w, l + h) - loss(w, l - h)) / (2 * h), accuracy: 1e-7, "\(objective) \(w) \(l)")
                XCTAssertEqual(r.rewardChosen, beta * (w + 11), accuracy: 1e-12)
                XCTAssertEqual(r.margin, beta * ((w + 11) - (l + 12)), accuracy: 1e-12)
            }
        }
    }
}
