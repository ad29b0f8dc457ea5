import SmolTensor

/// SwiGLU gate: h = silu(g) · u, silu(g) = g · σ(g).
enum SwiGLU {
    /// g, u [count] -> h [count]
    static func forward(h: UnsafeMutablePointer<Float>, gate g: UnsafePointer<Float>, up u: UnsafePointer<Float>, count: Int) {
        Parallel.chunks(count / 8, minPerChunk: 256) { _, r in
            for k in r {
                let i = k * 8
                let gv = VectorMath.load(g + i)
                let s = 1 / (1 + FastExp.exp(-gv))
                VectorMath.store(gv * s * VectorMath.load(u + i), h + i)
            }
        }
        for i in (count / 8 * 8)..<count { let s = 1 / (1 + expf(-g[i])); h[i] = g[i] * s * u[i] }
    }

    /// dg = dh · u · σ(g)(1 + g(1 − σ(g))),  du = dh · silu(g)     all [count]
    static func backward(dGate: UnsafeMutablePointer<Float>, dUp: UnsafeMutablePointer<Float>, dh: UnsafePointer<Float>,
                         gate g: UnsafePointer<Float>, up u: UnsafePointer<Float>, count: Int) {
        Parallel.chunks(count / 8, minPerChunk: 256) { _, r in
            for k in r {
                let i = k * 8
                let gv = VectorMath.load(g + i), dhv = VectorMath.load(dh + i)
                let s = 1 / (1 + FastExp.exp(-gv))
                VectorMath.store(dhv * gv * s, dUp + i)
                VectorMath.store(dhv * VectorMath.load(u + i) * s * (1 + gv * (1 - s)), dGate + i)
            }
        }
        for i in (count / 8 * 8)..<count {
            let s = 1 / (1 + expf(-g[i]))
            dUp[i] = dh[i] * g[i] * s
            dGate[i] = dh[i] * u[i] * s * (1 + g[i] * (1 - s))
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
