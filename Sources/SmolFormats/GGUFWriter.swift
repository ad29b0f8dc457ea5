import Foundation

/// Writes a GGUF version 3 file: header, typed metadata, tensor infos, then each tensor's bytes at
/// an offset aligned to 32 bytes (llama.cpp's default `general.alignment`). The file is written
/// beside `path` and renamed into place, so a failed write leaves nothing behind.
public struct GGUFWriter {
    /// Metadata values with the exact GGUF types llama.cpp's loader checks.
    public enum Value {
        case u32(UInt32), i32(Int32), f32(Float), bool(Bool), string(String)
        case strings([String]), i32s([Int32])
    }

    public struct Tensor {
        public let name: String
        /// Innermost (contiguous) dimension first, as GGUF stores them.
        public let dimensions: [Int]
        public let type: GGUFTensorType
        /// Writes exactly the tensor's byte size into the sink.
        public let write: (FileSink) throws -> Void
        public init(name: String, dimensions: [Int], type: GGUFTensorType, write: @escaping (FileSink) throws -> Void) {
            self.name = name; self.dimensions = dimensions; self.type = type; self.write = write
        }
        var byteCount: Int { GGUFFile.byteSize(type: type.rawValue, dimensions: dimensions) ?? 0 }
    }

    public static let alignment = 32
    public var metadata: [(String, Value)] = []
    public var tensors: [Tensor] = []
    public init() {}

    public func write(to path: String) throws {
        for t in tensors where GGUFFile.byteSize(type: t.type.rawValue, dimensions: t.dimensions) == nil {
            throw GGUFError.malformed(path: path, reason: "tensor \(t.name): dimensions \(t.dimensions) do not fit \(t.type) blocks")
        }
        var head = Data()
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { head.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { head.append(contentsOf: $0) } }
        func string(_ s: String) { u64(UInt64(s.utf8.count)); head.append(contentsOf: Array(s.utf8)) }
        u32(0x4655_4747); u32(3); u64(UInt64(tensors.count)); u64(UInt64(metadata.count))
        for (key, value) in metadata {
            string(key)
            switch value {
            case let .u32(v): u32(4); u32(v)
            case let .i32(v): u32(5); u32(UInt32(bitPattern: v))
            case let .f32(v): u32(6); u32(v.bitPattern)
            case let .bool(v): u32(7); head.append(v ? 1 : 0)
            case let .string(s): u32(8); string(s)
            case let .strings(a): u32(9); u32(8); u64(UInt64(a.count)); for s in a { string(s) }
            case let .i32s(a): u32(9); u32(5); u64(UInt64(a.count)); for v in a { u32(UInt32(bitPattern: v)) }
            }
        }
        var offset = 0
        for t in tensors {
            string(t.name); u32(UInt32(t.dimensions.count))
            for d in t.dimensions { u64(UInt64(d)) }
            u32(t.type.rawValue); u64(UInt64(offset))
            offset += (t.byteCount + GGUFWriter.alignment - 1) / GGUFWriter.alignment * GGUFWriter.alignment
        }
        while head.count % GGUFWriter.alignment != 0 { head.append(0) }

        let tmp = path + ".tmp-\(getpid())"
        do {
            let sink = try FileSink(path: tmp)
            try sink.write(head)
            let zeros = [UInt8](repeating: 0, count: GGUFWriter.alignment)
            for t in tensors {
                try t.write(sink)
                let pad = (GGUFWriter.alignment - t.byteCount % GGUFWriter.alignment) % GGUFWriter.alignment
                try zeros.withUnsafeBytes { try sink.write(UnsafeRawBufferPointer(rebasing: $0[0..<pad])) }
            }
            try sink.syncAndClose()
            if rename(tmp, path) != 0 { throw GGUFError.malformed(path: path, reason: "cannot rename \(tmp) into place") }
        } catch {
            unlink(tmp)
            throw error
        }
    }

    /// Float32 rows as llama.cpp's Q8_0 blocks (`quantize_row_q8_0_ref`): per 32 values
    /// d = max|x| / 127 stored as f16, q = round(x / d).
    public static func quantizeQ8_0(_ x: UnsafePointer<Float>, count: Int, into out: UnsafeMutableRawPointer) {
        precondition(count % 32 == 0)
        for b in 0..<(count / 32) {
            let src = x + b * 32, dst = out + b * 34
            var amax: Float = 0
            for j in 0..<32 { amax = max(amax, abs(src[j])) }
            let d = amax / 127
            let id: Float = d != 0 ? 1 / d : 0
            dst.storeBytes(of: Float16(d).bitPattern.littleEndian, as: UInt16.self)
            for j in 0..<32 { dst.storeBytes(of: Int8((src[j] * id).rounded(.toNearestOrAwayFromZero)), toByteOffset: 2 + j, as: Int8.self) }
        }
    }
}
