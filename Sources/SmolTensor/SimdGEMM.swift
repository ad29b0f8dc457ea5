/// Our own float32 GEMM in Swift SIMD, C[m, n] = A[m, k] · B[k, n] (row-major), threaded over row
/// blocks. It exists so `smol bench hw` can show what hand-written Swift reaches next to OpenBLAS;
/// training uses OpenBLAS. Register block: 4 rows × 16 columns (8 SIMD8 accumulators), k blocked
/// by 256 so the B panel stays in L2.
public enum SimdGEMM {
    public static func multiply(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                                c: UnsafeMutablePointer<Float>) {
        typealias V = SIMD8<Float>
        c.update(repeating: 0, count: m * n)
        let kc = 256
        Parallel.chunks((m + 3) / 4) { _, blocks in
            var p0 = 0
            while p0 < k {
                let p1 = min(p0 + kc, k)
                for blk in blocks {
                    let i0 = blk * 4, rows = min(4, m - i0)
                    var j = 0
                    while rows == 4 && j + 16 <= n {
                        let c0 = c + i0 * n + j, c1 = c0 + n, c2 = c1 + n, c3 = c2 + n
                        var r00 = VectorMath.load(c0), r01 = VectorMath.load(c0 + 8)
                        var r10 = VectorMath.load(c1), r11 = VectorMath.load(c1 + 8)
                        var r20 = VectorMath.load(c2), r21 = VectorMath.load(c2 + 8)
                        var r30 = VectorMath.load(c3), r31 = VectorMath.load(c3 + 8)
                        let a0 = a + i0 * k, a1 = a0 + k, a2 = a1 + k, a3 = a2 + k
                        for p in p0..<p1 {
                            let b0 = VectorMath.load(b + p * n + j), b1 = VectorMath.load(b + p * n + j + 8)
                            let v0 = V(repeating: a0[p]), v1 = V(repeating: a1[p]), v2 = V(repeating: a2[p]), v3 = V(repeating: a3[p])
                            r00 = r00.addingProduct(v0, b0); r01 = r01.addingProduct(v0, b1)
                            r10 = r10.addingProduct(v1, b0); r11 = r11.addingProduct(v1, b1)
                            r20 = r20.addingProduct(v2, b0); r21 = r21.addingProduct(v2, b1)
                            r30 = r30.addingProduct(v3, b0); r31 = r31.addingProduct(v3, b1)
                        }
                        VectorMath.store(r00, c0); VectorMath.store(r01, c0 + 8)
                        VectorMath.store(r10, c1); VectorMath.store(r11, c1 + 8)
                        VectorMath.store(r20, c2); VectorMath.store(r21, c2 + 8)
                        VectorMath.store(r30, c3); VectorMath.store(r31, c3 + 8)
                        j += 16
                    }
                    while j < n {   // remaining columns (and partial row blocks), scalar
                        for i in 0..<rows {
                            var s = c[(i0 + i) * n + j]
                            for p in p0..<p1 { s += a[(i0 + i) * k + p] * b[p * n + j] }
                            c[(i0 + i) * n + j] = s
                        }
                        j += 1
                    }
                }
                p0 = p1
            }
        }
    }
}
