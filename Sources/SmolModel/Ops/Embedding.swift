import SmolTensor

/// Token embedding lookup.
enum Embedding {
    /// out[n, :] = table[tokens[n], :]     tokens [N], table [V, C], out [N, C]
    static func forward(out: UnsafeMutablePointer<Float>, tokens: UnsafePointer<Int32>, table: UnsafePointer<Float>,
                        n: Int, c: Int) {
        Parallel.forEach(n, minPerChunk: 64) { i in
            (out + i * c).update(from: table + Int(tokens[i]) * c, count: c)
        }
    }

    /// dTable[tokens[n], :] += dOut[n, :]. Workers own disjoint column slices, so repeated tokens
    /// never race and the sum order (token order) is fixed.
    static func backward(dTable: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>, tokens: UnsafePointer<Int32>,
                         n: Int, c: Int) {
        Parallel.chunks(c / 8, minPerChunk: 4) { _, r in
            let lo = r.lowerBound * 8, hi = r.upperBound == c / 8 ? c : r.upperBound * 8
            for i in 0..<n {
                VectorMath.add(dOut + i * c + lo, into: dTable + Int(tokens[i]) * c + lo, hi - lo)
            }
        }
        if c < 8 { for i in 0..<n { VectorMath.add(dOut + i * c, into: dTable + Int(tokens[i]) * c, c) } }
    }
}
