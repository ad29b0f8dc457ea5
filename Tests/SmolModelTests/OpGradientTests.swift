import XCTest
@testable import SmolModel
import SmolTensor

/// Each op's backward against central finite differences of its forward.
///
/// The check is directional: with a fixed random cotangent R, L(x) = Σ R ⊙ f(x), and for a random
/// direction U the analytic <∇L, U> must equal (L(x + εU) − L(x − εU)) / 2ε. In float32 with
/// ε = 1e-2 and O(1) inputs the truncation error is O(ε²) ≈ 1e-4 and rounding adds ≈ 1e-7·|L|/ε,
/// so 3e-3 relative (plus a small absolute floor) separates a correct gradient from a wrong one
/// (a sign or factor error is off by ≥ 100%).
final class OpGradientTests: XCTestCase {
    var rng = RandomStream(seed: 42, purpose: "test")

    func random(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in rng.nextNormal() * scale } }

    func dot(_ a: [Float], _ b: [Float]) -> Double { zip(a, b).reduce(0) { $0 + Double($1.0) * Double($1.1) } }

    /// Compares <analytic, u> with the central difference of `loss` along u.
    func check(_ x: [Float], analytic: [Float], eps: Float = 1e-2, file: StaticString = #filePath, line: UInt = #line,
               _ loss: ([Float]) -> Double) {
        let u = random(x.count)
        let plus = zip(x, u).map { $0 + eps * $1 }, minus = zip(x, u).map { $0 - eps * $1 }
        let numeric = (loss(plus) - loss(minus)) / (2 * Double(eps))
        let exact = dot(analytic, u)
        XCTAssertEqual(exact, numeric, accuracy: 3e-3 * max(abs(numeric), 1) , "analytic \(exact) vs numeric \(numeric)", file: file, line: line)
        XCTAssertNotEqual(exact, 0, "degenerate check", file: file, line: line)
    }

    func testRMSNorm() {
        let n = 5, c = 24
        let x = random(n * c), w = random(c), r = random(n * c)
        func run(_ x: [Float], _ w: [Float]) -> [Float] {
            var y = [Float](repeating: 0, count: n * c), rstd = [Float](repeating: 0, count: n)
            RMSNorm.forward(y: &y, rstd: &rstd, x: x, w: w, n: n, c: c, eps: 1e-5)
            return y
        }
        var rstd = [Float](repeating: 0, count: n), y = [Float](repeating: 0, count: n * c)
        RMSNorm.forward(y: &y, rstd: &rstd, x: x, w: w, n: n, c: c, eps: 1e-5)
        var dx = [Float](repeating: 0, count: n * c), dw = [Float](repeating: 0, count: c)
        var partials = [Float](repeating: 0, count: Parallel.threads * c)
        RMSNorm.backward(dx: &dx, dw: &dw, dy: r, x: x, w: w, rstd: rstd, n: n, c: c, partials: &partials)
        check(x, analytic: dx) { dot(run($0, w), r) }
        check(w, analytic: dw) { dot(run(x, $0), r) }
    }

    func testSwiGLU() {
        let n = 37
        let g = random(n, scale: 2), u = random(n), r = random(n)
        func run(_ g: [Float], _ u: [Float]) -> [Float] {
            var h = [Float](repeating: 0, count: n); SwiGLU.forward(h: &h, gate: g, up: u, count: n); return h
        }
        var dg = [Float](repeating: 0, count: n), du = dg
        SwiGLU.backward(dGate: &dg, dUp: &du, dh: r, gate: g, up: u, count: n)
        check(g, analytic: dg) { dot(run($0, u), r) }
        check(u, analytic: du) { dot(run(g, $0), r) }
    }

    func testLinear() {
        let n = 6, i = 10, o = 7
        let x = random(n * i), w = random(o * i), r = random(n * o)
        func run(_ x: [Float], _ w: [Float]) -> [Float] {
            var y = [Float](repeating: 0, count: n * o); Linear.forward(y: &y, x: x, w: w, n: n, inDim: i, outDim: o); return y
        }
        var dx = [Float](repeating: 0, count: n * i), dw = [Float](repeating: 0, count: o * i)
        Linear.backward(dx: &dx, dw: &dw, dy: r, x: x, w: w, n: n, inDim: i, outDim: o)
        check(x, analytic: dx) { dot(run($0, w), r) }
        check(w, analytic: dw) { dot(run(x, $0), r) }
    }

    func testEmbedding() {
        let v = 11, c = 20, tokens: [Int32] = [3, 7, 3, 0, 10, 3]
        let table = random(v * c), r = random(tokens.count * c)
        func run(_ t: [Float]) -> [Float] {
            var out = [Float](repeating: 0, count: tokens.count * c)
            Embedding.forward(out: &out, tokens: tokens, table: t, n: tokens.count, c: c); return out
        }
        var dt = [Float](repeating: 0, count: v * c)
        Embedding.backward(dTable: &dt, dOut: r, tokens: tokens, n: tokens.count, c: c)
        check(table, analytic: dt) { dot(run($0), r) }
    }

    func testRoPE() {
        let n = 9, heads = 3, d = 16
        let table = RoPETable(headDim: d, maxPositions: 32, theta: 10_000)
        let positions: [Int32] = [0, 1, 2, 3, 4, 0, 1, 20, 31]
        let x = random(n * heads * d), r = random(n * heads * d)
        func run(_ x: [Float]) -> [Float] {
            var y = x; table.apply(&y, positions: positions, n: n, heads: heads, inverse: false); return y
        }
        var dx = r
        table.apply(&dx, positions: positions, n: n, heads: heads, inverse: true)
        check(x, analytic: dx) { dot(run($0), r) }
        // A rotation keeps norms: a check that the forward is a rotation at all.
        XCTAssertEqual(dot(run(x), run(x)), dot(x, x), accuracy: 1e-3 * dot(x, x))
    }

    func testAttentionWithGQAAndDocumentMask() {
        let b = 2, t = 70, h = 4, kv = 2, d = 8   // t > block size: exercises several query blocks
        let att = Attention(batch: b, seqLen: t, heads: h, kvHeads: kv, headDim: d)
        var keyStart = [Int32](repeating: 0, count: b * t)
        for i in 0..<t { keyStart[i] = i < 30 ? 0 : (i < 66 ? 30 : 66); keyStart[t + i] = i < 5 ? 0 : 5 }
        let q = random(b * t * h * d), k = random(b * t * kv * d), v = random(b * t * kv * d), r = random(b * t * h * d)
        func run(_ q: [Float], _ k: [Float], _ v: [Float]) -> [Float] {
            var out = [Float](repeating: 0, count: b * t * h * d), lse = [Float](repeating: 0, count: b * h * t)
            att.forward(out: &out, lse: &lse, q: q, k: k, v: v, keyStart: keyStart); return out
        }
        var out = [Float](repeating: 0, count: b * t * h * d), lse = [Float](repeating: 0, count: b * h * t)
        att.forward(out: &out, lse: &lse, q: q, k: k, v: v, keyStart: keyStart)
        var dq = [Float](repeating: 0, count: q.count), dk = [Float](repeating: 0, count: k.count), dv = dk
        att.backward(dq: &dq, dk: &dk, dv: &dv, dOut: r, out: out, lse: lse, q: q, k: k, v: v, keyStart: keyStart)
        check(q, analytic: dq) { dot(run($0, k, v), r) }
        check(k, analytic: dk) { dot(run(q, $0, v), r) }
        check(v, analytic: dv) { dot(run(q, k, $0), r) }
        // The first token of a document sees only itself: its output is its own value vector.
        let row = (t + 5) * h * d   // batch 1, position 5, head 0 -> kv head 0
        for j in 0..<d { XCTAssertEqual(out[row + j], v[(t + 5) * kv * d + j], accuracy: 1e-5) }
    }

    func testCrossEntropyHead() {
        let n = 7, c = 12, vocab = 29
        let head = CrossEntropyHead(vocab: vocab, hidden: c, maxRows: n, maxChunkFloats: 3 * vocab)  // 3 rows per chunk
        let x = random(n * c), w = random(vocab * c, scale: 0.5)
        let targets: [Int32] = [1, 28, -1, 5, 5, 0, 13]
        let scale: Float = 1 / 6
        func loss(_ x: [Float], _ w: [Float]) -> Double {
            head.forward(x: x, w: w, targets: targets, n: n, scale: scale, dx: nil, dw: nil).loss * Double(scale)
        }
        var dx = [Float](repeating: 0, count: n * c), dw = [Float](repeating: 0, count: vocab * c)
        let r = head.forward(x: x, w: w, targets: targets, n: n, scale: scale, dx: &dx, dw: &dw)
        XCTAssertEqual(r.count, 6)
        // Loss by hand for row 0.
        var logits = [Double](repeating: 0, count: vocab)
        for j in 0..<vocab { for k in 0..<c { logits[j] += Double(x[k]) * Double(w[j * c + k]) } }
        let m = logits.max()!
        let row0 = m + Foundation.log(logits.map { Foundation.exp($0 - m) }.reduce(0, +)) - logits[1]
        let single = head.forward(x: x, w: w, targets: [1, -1, -1, -1, -1, -1, -1], n: n, scale: 1, dx: nil, dw: nil)
        XCTAssertEqual(single.loss, row0, accuracy: 1e-4 * row0)
        check(x, analytic: dx) { loss($0, w) }
        check(w, analytic: dw) { loss(x, $0) }

        // Loss weights (SFT's per-sequence mean): each row's loss and gradient scale by its weight.
        let weights: [Float] = [0.5, 2, 1, 0.25, 0.25, 1, 3]
        func weighted(_ x: [Float], _ w: [Float]) -> Double {
            head.forward(x: x, w: w, targets: targets, weights: weights, n: n, scale: scale, dx: nil, dw: nil).loss * Double(scale)
        }
        var wdx = [Float](repeating: 0, count: n * c), wdw = [Float](repeating: 0, count: vocab * c)
        let rw = head.forward(x: x, w: w, targets: targets, weights: weights, n: n, scale: scale, dx: &wdx, dw: &wdw)
        var expected = 0.0
        for (i, t) in targets.enumerated() where t >= 0 {
            var oneHot = [Int32](repeating: -1, count: n); oneHot[i] = t
            expected += Double(weights[i]) * head.forward(x: x, w: w, targets: oneHot, n: n, scale: 1, dx: nil, dw: nil).loss
        }
        XCTAssertEqual(rw.loss, expected, accuracy: 1e-4 * expected)
        check(x, analytic: wdx) { weighted($0, w) }
        check(w, analytic: wdw) { weighted(x, $0) }
    }

    func testFastExpAccuracy() {
        var worst: Float = 0
        var x: Float = -87
        while x < 88 {
            let v = FastExp.exp(SIMD8<Float>(repeating: x))[0]
            let e = Foundation.exp(Double(x))
            worst = max(worst, Float(abs(Double(v) - e) / e))
            x += 0.0137
        }
        XCTAssertLessThan(worst, 5e-7)
        XCTAssertEqual(FastExp.exp(SIMD8<Float>(repeating: -200))[0], 0)
        XCTAssertEqual(FastExp.exp(SIMD8<Float>(repeating: -.infinity))[0], 0)
    }
}
