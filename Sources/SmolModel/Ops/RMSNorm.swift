import SmolTensor

/// RMSNorm: y = x · rstd · w, rstd = 1 / sqrt(mean(x²) + eps).
enum RMSNorm {
    /// x [N, C], w [C] -> y [N, C], rstd [N]
    static func forward(y: UnsafeMutablePointer<Float>, rstd: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>,
                        w: UnsafePointer<Float>, n: Int, c: Int, eps: Float) {
        Parallel.forEach(n, minPerChunk: 16) { i in
            let xi = x + i * c, yi = y + i * c
            let r = 1 / (VectorMath.sumOfSquares(xi, c) / Float(c) + eps).squareRoot()
            rstd[i] = r
            var j = 0
            let vr = SIMD8<Float>(repeating: r)
            while j + 8 <= c { VectorMath.store(VectorMath.load(xi + j) * vr * VectorMath.load(w + j), yi + j); j += 8 }
            while j < c { yi[j] = xi[j] * r * w[j]; j += 1 }
        }
    }

    /// dx [N, C] += rstd·g − x·rstd³·(Σ g·x)/C with g = dy·w;  dw [C] += Σₙ dy·x·rstd.
    /// `partials` holds threads × C floats: each worker sums its rows, then chunks are added in order.
    static func backward(dx: UnsafeMutablePointer<Float>, dw: UnsafeMutablePointer<Float>, dy: UnsafePointer<Float>,
                         x: UnsafePointer<Float>, w: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
                         n: Int, c: Int, partials: UnsafeMutablePointer<Float>) {
        let workers = max(1, min(Parallel.threads, n / 16))
        partials.update(repeating: 0, count: workers * c)
        Parallel.chunks(n, minPerChunk: 16) { p, rows in
            let dwp = partials + p * c
            for i in rows {
                let xi = x + i * c, dyi = dy + i * c, dxi = dx + i * c
                let r = rstd[i]
                var gx = SIMD8<Float>(repeating: 0)
                var j = 0
                while j + 8 <= c {
                    let xv = VectorMath.load(xi + j), dyv = VectorMath.load(dyi + j)
                    gx = gx.addingProduct(dyv * VectorMath.load(w + j), xv)
                    VectorMath.store(VectorMath.load(dwp + j).addingProduct(dyv, xv * r), dwp + j)
                    j += 8
                }
                var dot = gx.sum()
                while j < c { dot += dyi[j] * w[j] * xi[j]; dwp[j] += dyi[j] * xi[j] * r; j += 1 }
                let k = dot * r * r * r / Float(c)
                j = 0
                let vr = SIMD8<Float>(repeating: r), vk = SIMD8<Float>(repeating: k)
                while j + 8 <= c {
                    let g = VectorMath.load(dyi + j) * VectorMath.load(w + j)
                    let v = VectorMath.load(dxi + j) + g * vr - VectorMath.load(xi + j) * vk
                    VectorMath.store(v, dxi + j)
                    j += 8
                }
                while j < c { dxi[j] += dyi[j] * w[j] * r - xi[j] * k; j += 1 }
            }
        }
        for p in 0..<workers { VectorMath.add(partials + p * c, into: dw, c) }
    }
}
