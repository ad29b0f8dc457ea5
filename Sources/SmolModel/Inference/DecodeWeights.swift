import Foundation
import SmolKernels
import SmolTensor

/// Weights kept in a GGUF file's own block quantisation for single-token decoding. Decoding one
/// token reads every weight once, so its speed is set by work and bytes per weight: Q4_1 reads
/// about 0.75 bytes per weight where float32 reads 4. The quantised values are the file's, so
/// results equal those of the dequantised float32 weights up to summation order.
public enum BlockFormat: Sendable {
    /// block { half d; int8 q[32] }: w = d·q
    case q8_0
    /// block { half d, m; u8 nibbles[16] }: w = d·q + m, element j low nibble of byte j, j+16 high
    case q4_1
    /// block { half d; u8 nibbles[16] }: w = d·(q − 8)
    case q4_0

    /// Bytes of one block in the GGUF file.
    public var blockBytes: Int { switch self { case .q8_0: return 34; case .q4_1: return 20; case .q4_0: return 18 } }
    var quantBytes: Int { self == .q8_0 ? 32 : 16 }
}

/// A [rows, cols] block-quantised matrix, repacked at load for the decode kernel: rows in groups
/// of four, and for each group and block of 32 columns
///   [4 × Float scale d][4 × Float offset m (Q4 only)][4 × quantised values]
/// so the kernel reads four scales with one load and the four rows share the loads of x.
/// (Q4_0's offset is −8·d; padding rows of the last group have d = m = 0.)
public final class BlockMatrix {
    public let format: BlockFormat
    public let rows: Int, cols: Int
    let packed: UnsafeMutableRawPointer
    let blockStride: Int   // bytes per (group, block)
    var groups: Int { (rows + 3) / 4 }

    /// `raw`: the GGUF rows, row-major, `rows × cols/32` blocks.
    public init(format: BlockFormat, rows: Int, cols: Int, raw: UnsafeRawPointer) {
        precondition(cols % 32 == 0)
        self.format = format; self.rows = rows; self.cols = cols
        let nb = cols / 32, q = format.quantBytes
        blockStride = format == .q8_0 ? 16 + 4 * q : 32 + 4 * q
        let groups = (rows + 3) / 4
        packed = UnsafeMutableRawPointer.allocate(byteCount: groups * nb * blockStride, alignment: 64)
        packed.initializeMemory(as: UInt8.self, repeating: 0, count: groups * nb * blockStride)
        let rowBytes = nb * format.blockBytes
        func half(_ p: UnsafeRawPointer) -> Float { Float(Float16(bitPattern: p.loadUnaligned(as: UInt16.self))) }
        for r in 0..<rows {
            let g = r / 4, k = r % 4
            for b in 0..<nb {
                let src = raw + r * rowBytes + b * format.blockBytes
                let dst = packed + (g * nb + b) * blockStride
                let d = half(src)
                dst.storeBytes(of: d, toByteOffset: 4 * k, as: Float.self)
                switch format {
                case .q8_0:
                    (dst + 16 + q * k).copyMemory(from: src + 2, byteCount: q)
                case .q4_1:
                    dst.storeBytes(of: half(src + 2), toByteOffset: 16 + 4 * k, as: Float.self)
                    (dst + 32 + q * k).copyMemory(from: src + 4, byteCount: q)
                case .q4_0:
                    dst.storeBytes(of: -8 * d, toByteOffset: 16 + 4 * k, as: Float.self)
                    (dst + 32 + q * k).copyMemory(from: src + 2, byteCount: q)
                }
            }
        }
    }
    deinit { packed.deallocate() }

    /// y [rows] (+)= W x, x [cols].
    public func multiply(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, accumulate: Bool = false) {
        BlockMatrix.multiply([(self, y)], x: x, accumulate: accumulate)
    }

    /// y_i (+)= W_i x for matrices that share the input x (q/k/v, gate/up): one parallel step
    /// for all of them, row groups split evenly across the threads.
    public static func multiply(_ items: [(BlockMatrix, UnsafeMutablePointer<Float>)], x: UnsafePointer<Float>, accumulate: Bool = false) {
        guard let cols = items.first?.0.cols else { return }
        precondition(items.allSatisfy { $0.0.cols == cols })
        let nb = cols / 32
        // Σ x over each block: the Q4 offset terms become one multiply per block.
        let sums = UnsafeMutablePointer<Float>.allocate(capacity: nb)
        defer { sums.deallocate() }
        for b in 0..<nb {
            var s = SIMD8<Float>()
            for i in 0..<4 { s += VectorMath.load(x + 32 * b + 8 * i) }
            sums[b] = s.sum()
        }
        var starts: [Int] = [0]   // first global group of each matrix
        for (m, _) in items { starts.append(starts.last! + m.groups) }
        let total = starts.last!
        starts.withUnsafeBufferPointer { starts in
            SpinPool.shared.chunks(total) { range in
                var item = 0
                for g in range {
                    while g >= starts[item + 1] { item += 1 }
                    items[item].0.group(g - starts[item], x: x, sums: sums, nb: nb, y: items[item].1, accumulate: accumulate)
                }
            }
        }
    }

    /// Whether groups run the AVX-512 kernel (SmolKernels/block_decode.c) rather than the portable
    /// one below; SMOL_AVX512=off forces the portable one (the test suite's way to cover it).
    public static let usesAVX512 = smol_use_avx512() != 0

    @inline(__always)
    func group(_ g: Int, x: UnsafePointer<Float>, sums: UnsafePointer<Float>, nb: Int, y: UnsafeMutablePointer<Float>, accumulate: Bool) {
        let p = UnsafeRawPointer(packed) + g * nb * blockStride
        var r4 = SIMD4<Float>()
        if BlockMatrix.usesAVX512 {
            withUnsafeMutableBytes(of: &r4) { out in
                let o = out.baseAddress!.assumingMemoryBound(to: Float.self)
                if format == .q8_0 { smol_q8_group_dot(p, x, Int32(nb), o) } else { smol_q4_group_dot(p, x, sums, Int32(nb), o) }
            }
        } else {
            r4 = format == .q8_0 ? BlockMatrix.groupQ8(p, x, nb) : BlockMatrix.groupQ4(p, x, sums, nb)
        }
        let r0 = 4 * g
        for k in 0..<min(4, rows - r0) { y[r0 + k] = accumulate ? y[r0 + k] + r4[k] : r4[k] }
    }

    /// Σ of 4 products, added as a tree (two independent chains).
    @inline(__always) static func dot32(_ a: SIMD8<Float>, _ b: SIMD8<Float>, _ c: SIMD8<Float>, _ d: SIMD8<Float>,
                                        _ x0: SIMD8<Float>, _ x1: SIMD8<Float>, _ x2: SIMD8<Float>, _ x3: SIMD8<Float>) -> SIMD8<Float> {
        (a * x0).addingProduct(b, x1) + (c * x2).addingProduct(d, x3)
    }

    @inline(__always) static func scale(_ p: UnsafeRawPointer, _ k: Int) -> SIMD8<Float> {
        SIMD8(repeating: p.load(fromByteOffset: 4 * k, as: Float.self))
    }

    /// Four rows of Q8_0 against x.
    static func groupQ8(_ p: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ nb: Int) -> SIMD4<Float> {
        var t0 = SIMD8<Float>(), t1 = t0, t2 = t0, t3 = t0
        @inline(__always) func eight(_ q: UnsafeRawPointer) -> SIMD8<Float> {
            SIMD8<Float>(SIMD8<Int32>(truncatingIfNeeded: q.loadUnaligned(as: SIMD8<Int8>.self)))
        }
        @inline(__always) func row(_ q: UnsafeRawPointer, _ x0: SIMD8<Float>, _ x1: SIMD8<Float>, _ x2: SIMD8<Float>, _ x3: SIMD8<Float>) -> SIMD8<Float> {
            dot32(eight(q), eight(q + 8), eight(q + 16), eight(q + 24), x0, x1, x2, x3)
        }
        for b in 0..<nb {
            let blk = p + b * 144, xb = x + 32 * b
            let x0 = VectorMath.load(xb), x1 = VectorMath.load(xb + 8), x2 = VectorMath.load(xb + 16), x3 = VectorMath.load(xb + 24)
            t0.addProduct(row(blk + 16, x0, x1, x2, x3), scale(blk, 0))
            t1.addProduct(row(blk + 48, x0, x1, x2, x3), scale(blk, 1))
            t2.addProduct(row(blk + 80, x0, x1, x2, x3), scale(blk, 2))
            t3.addProduct(row(blk + 112, x0, x1, x2, x3), scale(blk, 3))
        }
        return SIMD4(t0.sum(), t1.sum(), t2.sum(), t3.sum())
    }

    /// Four rows of Q4_1 / Q4_0 against x: Σ d·q·x + m·Σx per block.
    static func groupQ4(_ p: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ sums: UnsafePointer<Float>, _ nb: Int) -> SIMD4<Float> {
        var t0 = SIMD8<Float>(), t1 = t0, t2 = t0, t3 = t0
        var offsets = SIMD4<Float>()
        @inline(__always) func row(_ q: UnsafeRawPointer, _ x0: SIMD8<Float>, _ x1: SIMD8<Float>, _ x2: SIMD8<Float>, _ x3: SIMD8<Float>) -> SIMD8<Float> {
            // bytes 0..<16 hold elements j (low nibble) and j + 16 (high nibble); widen first,
            // then mask and shift in 32-bit lanes.
            let a = SIMD8<Int32>(truncatingIfNeeded: q.loadUnaligned(as: SIMD8<UInt8>.self))
            let b = SIMD8<Int32>(truncatingIfNeeded: q.loadUnaligned(fromByteOffset: 8, as: SIMD8<UInt8>.self))
            return dot32(SIMD8<Float>(a & 0x0F), SIMD8<Float>(b & 0x0F), SIMD8<Float>(a &>> 4), SIMD8<Float>(b &>> 4), x0, x1, x2, x3)
        }
        for b in 0..<nb {
            let blk = p + b * 96, xb = x + 32 * b
            let x0 = VectorMath.load(xb), x1 = VectorMath.load(xb + 8), x2 = VectorMath.load(xb + 16), x3 = VectorMath.load(xb + 24)
            offsets.addProduct(blk.loadUnaligned(fromByteOffset: 16, as: SIMD4<Float>.self), SIMD4(repeating: sums[b]))
            t0.addProduct(row(blk + 32, x0, x1, x2, x3), scale(blk, 0))
            t1.addProduct(row(blk + 48, x0, x1, x2, x3), scale(blk, 1))
            t2.addProduct(row(blk + 64, x0, x1, x2, x3), scale(blk, 2))
            t3.addProduct(row(blk + 80, x0, x1, x2, x3), scale(blk, 3))
        }
        return SIMD4(t0.sum(), t1.sum(), t2.sum(), t3.sum()) + offsets
    }
}

/// The decode matrices of a model: per layer by parameter name suffix ("self_attn.q_proj.weight"),
/// and the output head. Matrices absent here use the float32 weights.
public struct DecodeWeights {
    public var layers: [[String: BlockMatrix]]
    public var head: BlockMatrix?
    public init(layers: [[String: BlockMatrix]], head: BlockMatrix?) { self.layers = layers; self.head = head }
}
