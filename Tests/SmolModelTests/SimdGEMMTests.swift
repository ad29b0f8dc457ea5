import XCTest
import SmolTensor

/// Our Swift GEMM against OpenBLAS on odd shapes (edge rows and columns), and against a Double
/// triple loop on a small case.
final class SimdGEMMTests: XCTestCase {
    func testMatchesBLASAndNaiveLoop() {
        var rng = RandomStream(seed: 5, purpose: "gemm-test")
        for (m, n, k) in [(37, 53, 300), (8, 16, 5), (64, 128, 257)] {
            let a = (0..<(m * k)).map { _ in rng.nextNormal() }, b = (0..<(k * n)).map { _ in rng.nextNormal() }
            var ours = [Float](repeating: 1, count: m * n), blas = [Float](repeating: 0, count: m * n)
            SimdGEMM.multiply(m: m, n: n, k: k, a: a, b: b, c: &ours)
            BLAS.sgemm(m: m, n: n, k: k, a: a, lda: k, b: b, ldb: n, c: &blas, ldc: n)
            for i in 0..<(m * n) { XCTAssertEqual(ours[i], blas[i], accuracy: 1e-3 * max(1, abs(blas[i]))) }
            if m == 8 {
                for i in 0..<m { for j in 0..<n {
                    var s = 0.0
                    for p in 0..<k { s += Double(a[i * k + p]) * Double(b[p * n + j]) }
                    XCTAssertEqual(Double(ours[i * n + j]), s, accuracy: 1e-5)
                } }
            }
        }
    }
}
