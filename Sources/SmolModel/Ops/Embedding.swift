import SmolTensor

/// Token embedding lookup.
enum Embedding {
    /// out[n, :] = table[tokens[n], :]     tokens [N], table [V, C], out [N, C]
    /// `rows`: the token ids the table holds (a vocabulary-parallel shard: rows.lowerBound is its
    /// row 0); other tokens get zeros, and the sum over the ranks is the whole lookup.
    static func forward(out: UnsafeMutablePointer<Float>, tokens: UnsafePointer<Int32>, table: UnsafePointer<Float>,
                        n: Int, c: Int, rows: Range<Int>? = nil) {
        Parallel.forEach(n, minPerChunk: 64) { i in
            let t = Int(tokens[i])
            if let rows {
                if rows.contains(t) { (out + i * c).update(from: table + (t - rows.lowerBound) * c, count: c) }
                else { (out + i * c).update(repeating: 0, count: c) }
            } else {
                (out + i * c).update(from: table + t * c, count: c)
            }
        }
    }

    /// dTable[tokens[n], :] += dOut[n, :]. Workers own disjoint column slices, so repeated tokens
    /// never race and the sum order (token order) is fixed.
    /// `rows`: as in forward; only the table's own tokens accumulate.
    static func backward(dTable: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>, tokens: UnsafePointer<Int32>,
                         n: Int, c: Int, rows: Range<Int>? = nil) {
        let all = rows ?? 0..<Int.max, base = rows?.lowerBound ?? 0
        Parallel.chunks(c / 8, minPerChunk: 4) { _, r in
            let lo = r.lowerBound * 8, hi = r.upperBound == c / 8 ? c : r.upperBound * 8
            for i in 0..<n where all.contains(Int(tokens[i])) {
                VectorMath.add(dOut + i * c + lo, into: dTable + (Int(tokens[i]) - base) * c + lo, hi - lo)
            }
        }
        if c < 8 { for i in 0..<n where all.contains(Int(tokens[i])) { VectorMath.add(dOut + i * c, into: dTable + (Int(tokens[i]) - base) * c, c) } }
    }
}
