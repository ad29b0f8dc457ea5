import Foundation

/// The ggml tensor types this reader decodes, with their block geometry.
/// Layouts follow ggml's block structs (ggml-common.h); every block begins or ends with fp16 scales.
public enum GGUFTensorType: UInt32, Sendable, CaseIterable {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q8_0 = 8, q4_K = 12, q5_K = 13, q6_K = 14, bf16 = 30

    public var name: String {
        switch self {
        case .f32: return "F32"; case .f16: return "F16"; case .bf16: return "BF16"
        case .q4_0: return "Q4_0"; case .q4_1: return "Q4_1"; case .q8_0: return "Q8_0"
        case .q4_K: return "Q4_K"; case .q5_K: return "Q5_K"; case .q6_K: return "Q6_K"
        }
    }

    /// (elements per block, bytes per block)
    public var block: (elements: Int, bytes: Int) {
        switch self {
        case .f32: return (1, 4); case .f16, .bf16: return (1, 2)
        case .q4_0: return (32, 18); case .q4_1: return (32, 20); case .q8_0: return (32, 34)
        case .q4_K: return (256, 144); case .q5_K: return (256, 176); case .q6_K: return (256, 210)
        }
    }

    /// Decodes `count` elements (a whole number of blocks) from `src` into `dst`.
    public func dequantize(_ src: UnsafeRawPointer, count: Int, into dst: UnsafeMutablePointer<Float>) {
        let (per, bytes) = block
        let blocks = count / per
        for b in 0..<blocks {
            let p = src + b * bytes, y = dst + b * per
            switch self {
            case .f32: y[0] = Float(bitPattern: p.loadUnaligned(as: UInt32.self))
            case .f16: y[0] = Self.half(p)
            case .bf16: y[0] = Float(bitPattern: UInt32(p.loadUnaligned(as: UInt16.self)) << 16)
            case .q8_0: GGUFTensorType.decodeQ8_0(p, y)
            case .q4_0: GGUFTensorType.decodeQ4(p + 2, y, scale: Self.half(p), offset: -8 * Self.half(p))
            case .q4_1: GGUFTensorType.decodeQ4(p + 4, y, scale: Self.half(p), offset: Self.half(p, 2))
            case .q4_K: GGUFTensorType.decodeQ4_K(p, y)
            case .q5_K: GGUFTensorType.decodeQ5_K(p, y)
            case .q6_K: GGUFTensorType.decodeQ6_K(p, y)
            }
        }
    }

    /// The fp16 value at byte `offset` of a block.
    @inline(__always) static func half(_ p: UnsafeRawPointer, _ offset: Int = 0) -> Float {
        Float(Float16(bitPattern: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
    }

    // block_q8_0 { half d; int8 qs[32] }: y = d · q
    static func decodeQ8_0(_ p: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(p)
        let q = (p + 2).assumingMemoryBound(to: Int8.self)
        for i in 0..<32 { y[i] = d * Float(q[i]) }
    }

    // block_q4_0 { half d; u8 qs[16] } and block_q4_1 { half d, m; u8 qs[16] }: element j is the
    // low nibble of qs[j], element j + 16 the high nibble; y = d · q + offset.
    static func decodeQ4(_ qs: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>, scale d: Float, offset m: Float) {
        let q = qs.assumingMemoryBound(to: UInt8.self)
        for j in 0..<16 {
            y[j] = d * Float(q[j] & 0xF) + m
            y[j + 16] = d * Float(q[j] >> 4) + m
        }
    }

    /// The 6-bit scale and min of sub-block j from the 12 packed bytes of Q4_K / Q5_K.
    @inline(__always) static func scaleMinK4(_ j: Int, _ q: UnsafePointer<UInt8>) -> (Float, Float) {
        if j < 4 { return (Float(q[j] & 63), Float(q[j + 4] & 63)) }
        return (Float((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4)), Float((q[j + 4] >> 4) | ((q[j] >> 6) << 4)))
    }

    // block_q4_K { half d, dmin; u8 scales[12]; u8 qs[128] }: 8 sub-blocks of 32, y = d·sc·q − dmin·m
    static func decodeQ4_K(_ p: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(p)
        let dmin = half(p, 2)
        let scales = (p + 4).assumingMemoryBound(to: UInt8.self), qs = (p + 16).assumingMemoryBound(to: UInt8.self)
        for j in 0..<4 {
            let (s1, m1) = scaleMinK4(2 * j, scales), (s2, m2) = scaleMinK4(2 * j + 1, scales)
            let q = qs + 32 * j, out = y + 64 * j
            for l in 0..<32 {
                out[l] = d * s1 * Float(q[l] & 0xF) - dmin * m1
                out[l + 32] = d * s2 * Float(q[l] >> 4) - dmin * m2
            }
        }
    }

    // block_q5_K { half d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128] }: a fifth bit from qh
    static func decodeQ5_K(_ p: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(p)
        let dmin = half(p, 2)
        let scales = (p + 4).assumingMemoryBound(to: UInt8.self)
        let qh = (p + 16).assumingMemoryBound(to: UInt8.self), qs = (p + 48).assumingMemoryBound(to: UInt8.self)
        for j in 0..<4 {
            let (s1, m1) = scaleMinK4(2 * j, scales), (s2, m2) = scaleMinK4(2 * j + 1, scales)
            let u1 = UInt8(1) << (2 * j), u2 = UInt8(2) << (2 * j)
            let q = qs + 32 * j, out = y + 64 * j
            for l in 0..<32 {
                out[l] = d * s1 * Float((q[l] & 0xF) + (qh[l] & u1 != 0 ? 16 : 0)) - dmin * m1
                out[l + 32] = d * s2 * Float((q[l] >> 4) + (qh[l] & u2 != 0 ? 16 : 0)) - dmin * m2
            }
        }
    }

    // block_q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16]; half d }: 6-bit values centred at 32
    static func decodeQ6_K(_ p: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(p, 208)
        for part in 0..<2 {
            let ql = (p + 64 * part).assumingMemoryBound(to: UInt8.self)
            let qh = (p + 128 + 32 * part).assumingMemoryBound(to: UInt8.self)
            let sc = (p + 192 + 8 * part).assumingMemoryBound(to: Int8.self)
            let out = y + 128 * part
            for l in 0..<32 {
                let s = l / 16
                let q1 = Int(ql[l] & 0xF | ((qh[l] >> 0) & 3) << 4) - 32
                let q2 = Int(ql[l + 32] & 0xF | ((qh[l] >> 2) & 3) << 4) - 32
                let q3 = Int(ql[l] >> 4 | ((qh[l] >> 4) & 3) << 4) - 32
                let q4 = Int(ql[l + 32] >> 4 | ((qh[l] >> 6) & 3) << 4) - 32
                out[l] = d * Float(sc[s]) * Float(q1)
                out[l + 32] = d * Float(sc[s + 2]) * Float(q2)
                out[l + 64] = d * Float(sc[s + 4]) * Float(q3)
                out[l + 96] = d * Float(sc[s + 6]) * Float(q4)
            }
        }
    }
}

extension GGUFFile {
    /// The raw bytes of tensor `info` (bounds were checked when the file was opened).
    public func withTensorBytes<R>(_ info: GGUFTensorInfo, _ body: (UnsafeRawPointer) throws -> R) rethrows -> R {
        try data.withUnsafeBytes { try body($0.baseAddress! + dataOffset + info.offset) }
    }

    public func tensorInfo(_ name: String) -> GGUFTensorInfo? { tensors.first { $0.name == name } }

    /// Tensor `info` decoded to float32, in GGUF element order (innermost dimension first).
    public func floats(_ info: GGUFTensorInfo, into dst: UnsafeMutablePointer<Float>) throws {
        guard let type = GGUFTensorType(rawValue: info.type) else {
            throw GGUFError.malformed(path: path, reason: "tensor '\(info.name)' has ggml type \(info.type), which this reader does not decode (supported: \(GGUFTensorType.allCases.map(\.name).joined(separator: ", ")))")
        }
        let count = info.dimensions.reduce(1, *)
        guard count % type.block.elements == 0 else {
            throw GGUFError.malformed(path: path, reason: "tensor '\(info.name)' has \(count) elements, not a whole number of \(type.name) blocks")
        }
        withTensorBytes(info) { type.dequantize($0, count: count, into: dst) }
    }

    public func floats(_ name: String) throws -> [Float] {
        guard let info = tensorInfo(name) else { throw GGUFError.malformed(path: path, reason: "no tensor named '\(name)'") }
        var out = [Float](repeating: 0, count: info.dimensions.reduce(1, *))
        try out.withUnsafeMutableBufferPointer { try floats(info, into: $0.baseAddress!) }
        return out
    }
}
