import Foundation
import SmolTensor

/// Knowledge distillation at the output head (Hinton et al., 2015). Per counted target, with z the
/// student's logits, p the teacher's distribution at temperature T and q = softmax(z / T):
///
///     loss = (1 − α) · CE(z, target) + α · T² · KL(p ‖ q)
///
/// (forward KL from the teacher: the student is pulled to cover the teacher's mass; the T² keeps
/// the distillation gradient's size independent of T). α = 0 is plain cross-entropy, α = 1 is
/// distillation alone. p is the teacher's whole distribution, or its top k renormalised (sparse).
public struct DistillationTarget {
    public let alpha: Float, temperature: Float
    /// Writes the teacher's probabilities at `temperature` for rows r0 ..< r0 + rows into p
    /// [rows, V], and Σⱼ pⱼ log pⱼ of each row into plogp [rows] (the KL's constant part: KL then
    /// reads as a divergence, 0 when the student matches).
    public let fill: (_ r0: Int, _ rows: Int, _ p: UnsafeMutablePointer<Float>, _ plogp: UnsafeMutablePointer<Float>) -> Void

    public init(alpha: Float, temperature: Float,
                fill: @escaping (_ r0: Int, _ rows: Int, _ p: UnsafeMutablePointer<Float>, _ plogp: UnsafeMutablePointer<Float>) -> Void) {
        self.alpha = alpha; self.temperature = temperature; self.fill = fill
    }
}

public enum DistillationLoss {
    typealias V8 = SIMD8<Float>

    /// One row, forward and backward together (the loss ends the graph).
    ///   z [V] student logits, p [V] teacher probabilities (Σ = 1), plogp = Σ p log p.
    ///   Returns CE = log Σ exp(z) − z_t and KL = Σ p log p − Σ p log q.
    ///   gradScale (the row's loss scale × weight): z is overwritten by
    ///   d loss / dz = gradScale · [(1 − α)(softmax(z) − onehot(t)) + α T (q − p)].
    static func row(_ z: UnsafeMutablePointer<Float>, _ p: UnsafePointer<Float>, plogp: Float, count V: Int, target t: Int,
                    alpha: Float, temperature T: Float, gradScale: Float?) -> (ce: Float, kl: Float) {
        let m = FastExp.max(z, V)
        let vm = V8(repeating: m), invT = V8(repeating: 1 / T)
        var s1 = V8(repeating: 0), sT = V8(repeating: 0), pz = V8(repeating: 0), ps = V8(repeating: 0)
        var j = 0
        // Σ exp(z − m), Σ exp((z − m)/T), Σ p (z − m), Σ p.
        while j + 8 <= V {
            let d = VectorMath.load(z + j) - vm, pv = VectorMath.load(p + j)
            s1 += FastExp.exp(d)
            sT += T == 1 ? FastExp.exp(d) : FastExp.exp(d * invT)
            pz += pv * d; ps += pv
            j += 8
        }
        var sum1 = s1.sum(), sumT = sT.sum(), pDot = pz.sum(), pSum = ps.sum()
        while j < V {
            let d = z[j] - m
            sum1 += expf(d); sumT += expf(d / T); pDot += p[j] * d; pSum += p[j]
            j += 1
        }
        let ce = logf(sum1) - (z[t] - m)
        // log qⱼ = (zⱼ − m)/T − log sumT
        let kl = plogp - pDot / T + logf(sumT) * pSum
        if let g = gradScale {
            let c1 = V8(repeating: g * (1 - alpha) / sum1), c2 = V8(repeating: g * alpha * T / sumT), c3 = V8(repeating: g * alpha * T)
            j = 0
            while j + 8 <= V {
                let d = VectorMath.load(z + j) - vm
                let e1 = FastExp.exp(d), eT = T == 1 ? e1 : FastExp.exp(d * invT)
                VectorMath.store(c1 * e1 + c2 * eT - c3 * VectorMath.load(p + j), z + j)
                j += 8
            }
            while j < V {
                let d = z[j] - m
                z[j] = c1[0] * expf(d) + c2[0] * expf(d / T) - c3[0] * p[j]
                j += 1
            }
            z[t] -= g * (1 - alpha)
        }
        return (ce, kl)
    }

    /// The teacher's side of a dense row: its logits zt [V] become p = softmax(zt / T) in place;
    /// returns Σ p log p = Σ p (zt − m)/T − log Σ exp((zt − m)/T).
    public static func teacherProbabilities(_ zt: UnsafeMutablePointer<Float>, count V: Int, temperature T: Float) -> Float {
        let m = FastExp.max(zt, V)
        let vm = V8(repeating: m), invT = V8(repeating: 1 / T)
        var s = V8(repeating: 0)
        var j = 0
        // zt ← (zt − m)/T, keeping it for Σ p (zt − m)/T below; then exp.
        while j + 8 <= V { let d = (VectorMath.load(zt + j) - vm) * invT; VectorMath.store(d, zt + j); j += 8 }
        while j < V { zt[j] = (zt[j] - m) / T; j += 1 }
        var dotE = V8(repeating: 0)
        j = 0
        while j + 8 <= V {
            let d = VectorMath.load(zt + j), e = FastExp.exp(d)
            s += e; dotE += e * d
            VectorMath.store(e, zt + j)
            j += 8
        }
        var sum = s.sum(), dot = dotE.sum()
        while j < V { let d = zt[j], e = expf(d); sum += e; dot += e * d; zt[j] = e; j += 1 }
        CrossEntropyHead.scale(zt, V, by: 1 / sum)
        return dot / sum - logf(sum)
    }

    /// The teacher's top k of a row of logits zt [V]: ids and logits, largest first (ties: lower id).
    public static func topK(_ zt: UnsafePointer<Float>, count V: Int, k: Int, ids: UnsafeMutablePointer<Int32>, values: UnsafeMutablePointer<Float>) {
        // A min-heap of the k best so far, at the root the weakest of them.
        var n = 0
        func swap(_ a: Int, _ b: Int) {
            let v = values[a]; values[a] = values[b]; values[b] = v
            let d = ids[a]; ids[a] = ids[b]; ids[b] = d
        }
        func weaker(_ a: Int, _ b: Int) -> Bool { values[a] < values[b] || (values[a] == values[b] && ids[a] > ids[b]) }
        func siftDown(_ i0: Int) {
            var i = i0
            while true {
                let l = 2 * i + 1, r = l + 1
                var s = i
                if l < n && weaker(l, s) { s = l }
                if r < n && weaker(r, s) { s = r }
                if s == i { return }
                swap(i, s); i = s
            }
        }
        for j in 0..<V {
            let v = zt[j]
            if n < k {
                values[n] = v; ids[n] = Int32(j); n += 1
                var i = n - 1
                while i > 0 { let up = (i - 1) / 2; if weaker(i, up) { swap(i, up); i = up } else { break } }
            } else if v > values[0] {
                values[0] = v; ids[0] = Int32(j); siftDown(0)
            }
        }
        // Largest first: repeatedly move the weakest to the end.
        while n > 1 {
            n -= 1
            swap(0, n)
            siftDown(0)
        }
    }

    /// A sparse row: p zero except at `ids`, there softmax(values / T) over the k entries; returns Σ p log p.
    public static func sparseProbabilities(ids: UnsafePointer<Int32>, values: UnsafePointer<Float>, k: Int, temperature T: Float,
                                    into p: UnsafeMutablePointer<Float>, count V: Int) -> Float {
        p.update(repeating: 0, count: V)
        var m = -Float.infinity
        for i in 0..<k { m = max(m, values[i]) }
        var sum: Float = 0
        for i in 0..<k { sum += expf((values[i] - m) / T) }
        let logSum = logf(sum)
        var plogp: Float = 0
        for i in 0..<k {
            let logp = (values[i] - m) / T - logSum
            let pi = expf(logp)
            p[Int(ids[i])] += pi
            plogp += pi * logp
        }
        return plogp
    }
}
