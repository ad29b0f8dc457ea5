import Foundation
import SmolTensor

/// Weights kept in a GGUF file's own block format for single-token decoding. Decoding one token
/// reads every weight once, so its speed is set by bytes per weight: Q4_1 reads 0.625 bytes per
/// weight where float32 reads 4. The blocks are the file's, so results equal those of the
/// dequantised float32 weights up to summation order.
public enum BlockFormat: Sendable {
    /// block { half d; int8 q[32] }: w = d·q
    case q8_0
    /// block { half d, m; u8 nibbles[16] }: w = d·q + m, element j low nibble of byte j, j+16 high
    case q4_1
    /// block { half d; u8 nibbles[16] }: w = d·(q − 8)
    case q4_0

    public var blockBytes: Int { switch self { case .q8_0: return 34; case .q4_1: return 20; case .q4_0: return 18 } }
}

/// A [rows, cols] matrix of row-major blocks of 32 weights.
public final class BlockMatrix {
    public let format: BlockFormat
    public let rows: Int, cols: Int
    let bytes: UnsafeMutableRawPointer
    let rowBytes: Int

    public init(format: BlockFormat, rows: Int, cols: Int, raw: UnsafeRawPointer) {
        precondition(cols % 32 == 0)
        self.format = format; self.rows = rows; self.cols = cols
        rowBytes = cols / 32 * format.blockBytes
        bytes = UnsafeMutableRawPointer.allocate(byteCount: rows * rowBytes, alignment: 64)
        bytes.copyMemory(from: raw, byteCount: rows * rowBytes)
    }
    deinit { bytes.deallocate() }

    /// y [rows] (+)= W x, x [cols]. Rows are split across threads.
    public func multiply(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, accumulate: Bool = false) {
        let nb = cols / 32
        // Σ x over each block: the Q4 offset terms become one multiply per block.
        let sums = UnsafeMutablePointer<Float>.allocate(capacity: nb)
        defer { sums.deallocate() }
        for b in 0..<nb {
            var s = SIMD8<Float>()
            for i in 0..<4 { s += VectorMath.load(x + 32 * b + 8 * i) }
            sums[b] = s.sum()
        }
        let format = self.format, base = UnsafeRawPointer(bytes), rowBytes = self.rowBytes
        Parallel.chunks(rows, minPerChunk: 64) { _, range in
            for r in range {
                let row = base + r * rowBytes
                let v: Float
                switch format {
                case .q8_0: v = BlockMatrix.rowQ8_0(row, x, nb)
                case .q4_1: v = BlockMatrix.rowQ4(row, x, sums, nb, hasMin: true)
                case .q4_0: v = BlockMatrix.rowQ4(row, x, sums, nb, hasMin: false)
                }
                y[r] = accumulate ? y[r] + v : v
            }
        }
    }

    @inline(__always) static func half(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
        Float(Float16(bitPattern: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
    }

    @inline(__always) static func floats(_ v: SIMD8<UInt8>) -> SIMD8<Float> {
        SIMD8<Float>(SIMD8<Int32>(truncatingIfNeeded: v))
    }

    @inline(__always) static func floats(_ v: SIMD8<Int8>) -> SIMD8<Float> {
        SIMD8<Float>(SIMD8<Int32>(truncatingIfNeeded: v))
    }

    static func rowQ8_0(_ row: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ nb: Int) -> Float {
        var total = SIMD8<Float>()
        for b in 0..<nb {
            let p = row + 34 * b, xb = x + 32 * b
            var acc = SIMD8<Float>()
            for i in 0..<4 {
                let q = p.loadUnaligned(fromByteOffset: 2 + 8 * i, as: SIMD8<Int8>.self)
                acc.addProduct(floats(q), VectorMath.load(xb + 8 * i))
            }
            total.addProduct(acc, SIMD8<Float>(repeating: half(p, 0)))
        }
        return total.sum()
    }

    static func rowQ4(_ row: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ sums: UnsafePointer<Float>, _ nb: Int,
                      hasMin: Bool) -> Float {
        let bytes = hasMin ? 20 : 18, qOffset = hasMin ? 4 : 2
        var total = SIMD8<Float>()
        var offsets: Float = 0
        for b in 0..<nb {
            let p = row + bytes * b, xb = x + 32 * b
            let d = half(p, 0)
            offsets += (hasMin ? half(p, 2) : -8 * d) * sums[b]
            var acc = SIMD8<Float>()
            for i in 0..<2 {
                let q = p.loadUnaligned(fromByteOffset: qOffset + 8 * i, as: SIMD8<UInt8>.self)
                acc.addProduct(floats(q & 0x0F), VectorMath.load(xb + 8 * i))
                acc.addProduct(floats(q &>> 4), VectorMath.load(xb + 16 + 8 * i))
            }
            total.addProduct(acc, SIMD8<Float>(repeating: d))
        }
        return total.sum() + offsets
    }
}

/// The decode matrices of a model: per layer by parameter name suffix ("self_attn.q_proj.weight"),
/// and the output head. Matrices absent here use the float32 weights.
public struct DecodeWeights {
    public var layers: [[String: BlockMatrix]]
    public var head: BlockMatrix?
    public init(layers: [[String: BlockMatrix]], head: BlockMatrix?) { self.layers = layers; self.head = head }
}
