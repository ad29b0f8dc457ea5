import Foundation

/// GGUF (llama.cpp's model file), versions 2 and 3: header, typed metadata, tensor infos and the
/// aligned data section. Every read is bounds-checked; a malformed file gives an error naming the
/// file and the problem.
public enum GGUFError: Error, CustomStringConvertible {
    case malformed(path: String, reason: String)
    public var description: String {
        switch self { case let .malformed(path, reason): return "\(path): not a valid GGUF file: \(reason)" }
    }
}

public indirect enum GGUFValue: Sendable, Equatable {
    case uint(UInt64), int(Int64), float(Double), bool(Bool), string(String), array([GGUFValue])

    public var int: Int? {
        switch self { case let .uint(v): return v <= UInt64(Int.max) ? Int(v) : nil; case let .int(v): return Int(v); default: return nil }
    }
    public var double: Double? {
        switch self { case let .float(v): return v; case let .uint(v): return Double(v); case let .int(v): return Double(v); default: return nil }
    }
    public var bool: Bool? { if case let .bool(b) = self { return b }; return nil }
    public var string: String? { if case let .string(s) = self { return s }; return nil }
    public var array: [GGUFValue]? { if case let .array(a) = self { return a }; return nil }
}

public struct GGUFTensorInfo: Sendable {
    public let name: String
    /// Dimensions as GGUF stores them: innermost (contiguous) first.
    public let dimensions: [Int]
    public let type: UInt32
    /// Offset from the start of the data section.
    public let offset: Int
}

public final class GGUFFile {
    public let path: String
    public let version: UInt32
    public let metadata: [String: GGUFValue]
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    public let dataOffset: Int
    public let data: Data

    public init(path: String) throws {
        self.path = path
        guard let d = try? Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) else {
            throw GGUFError.malformed(path: path, reason: "cannot read file")
        }
        data = d
        var r = Reader(data: d, path: path)
        guard try r.u32() == 0x4655_4747 else { throw GGUFError.malformed(path: path, reason: "wrong magic (expected GGUF)") }
        version = try r.u32()
        guard version == 2 || version == 3 else { throw GGUFError.malformed(path: path, reason: "unsupported version \(version)") }
        let tensorCount = try r.count(of: "tensor count")
        let kvCount = try r.count(of: "metadata count")
        var meta: [String: GGUFValue] = [:]
        for _ in 0..<kvCount {
            let key = try r.string()
            meta[key] = try r.value(type: try r.u32(), depth: 0)
        }
        metadata = meta
        var infos: [GGUFTensorInfo] = []
        for _ in 0..<tensorCount {
            let name = try r.string()
            let nDims = Int(try r.u32())
            guard nDims <= 8 else { throw GGUFError.malformed(path: path, reason: "tensor '\(name)' has \(nDims) dimensions") }
            var dims: [Int] = []
            for _ in 0..<nDims { dims.append(try r.count(of: "dimension of \(name)")) }
            infos.append(GGUFTensorInfo(name: name, dimensions: dims, type: try r.u32(), offset: try r.count(of: "offset of \(name)")))
        }
        tensors = infos
        alignment = meta["general.alignment"]?.int ?? 32
        guard alignment > 0 && alignment & (alignment - 1) == 0 else { throw GGUFError.malformed(path: path, reason: "alignment \(alignment) is not a power of two") }
        dataOffset = (r.position + alignment - 1) / alignment * alignment
        for t in infos {
            guard let size = GGUFFile.byteSize(type: t.type, dimensions: t.dimensions) else {
                if GGUFTensorType(rawValue: t.type) != nil {
                    throw GGUFError.malformed(path: path, reason: "tensor '\(t.name)' dimensions \(t.dimensions) do not fit its type")
                }
                continue   // an unknown type is reported when the tensor is read
            }
            guard t.offset % alignment == 0, dataOffset + t.offset + size <= d.count else {
                throw GGUFError.malformed(path: path, reason: "tensor '\(t.name)' (\(size) bytes at offset \(t.offset)) lies outside the \(d.count)-byte file")
            }
        }
    }

    /// Bytes of a tensor of a known type (nil for types this reader does not size).
    public static func byteSize(type: UInt32, dimensions: [Int]) -> Int? {
        var n = 1
        for d in dimensions {
            let (v, overflow) = n.multipliedReportingOverflow(by: d)
            if overflow { return nil }
            n = v
        }
        guard let (per, bytes) = GGUFTensorType(rawValue: type)?.block, n % per == 0 else { return nil }
        return n / per * bytes
    }

    struct Reader {
        let data: Data, path: String
        var position = 0

        mutating func bytes(_ n: Int) throws -> Data {
            guard n >= 0, position + n <= data.count else {
                throw GGUFError.malformed(path: path, reason: "truncated: needs \(n) bytes at offset \(position), file is \(data.count)")
            }
            defer { position += n }
            return data.subdata(in: (data.startIndex + position)..<(data.startIndex + position + n))
        }
        mutating func scalar<T: FixedWidthInteger>(_: T.Type) throws -> T {
            let b = try bytes(MemoryLayout<T>.size)
            return T(littleEndian: b.withUnsafeBytes { $0.loadUnaligned(as: T.self) })
        }
        mutating func u32() throws -> UInt32 { try scalar(UInt32.self) }
        mutating func count(of what: String) throws -> Int {
            let v = try scalar(UInt64.self)
            guard v <= UInt64(data.count) * 8 else { throw GGUFError.malformed(path: path, reason: "\(what) \(v) is impossible for a \(data.count)-byte file") }
            return Int(v)
        }
        mutating func string() throws -> String {
            let n = try count(of: "string length")
            return String(decoding: try bytes(n), as: UTF8.self)
        }
        mutating func value(type: UInt32, depth: Int) throws -> GGUFValue {
            switch type {
            case 0: return .uint(UInt64(try scalar(UInt8.self)))
            case 1: return .int(Int64(try scalar(Int8.self)))
            case 2: return .uint(UInt64(try scalar(UInt16.self)))
            case 3: return .int(Int64(try scalar(Int16.self)))
            case 4: return .uint(UInt64(try scalar(UInt32.self)))
            case 5: return .int(Int64(try scalar(Int32.self)))
            case 6: return .float(Double(Float(bitPattern: try scalar(UInt32.self))))
            case 7: return .bool(try scalar(UInt8.self) != 0)
            case 8: return .string(try string())
            case 9:
                guard depth < 4 else { throw GGUFError.malformed(path: path, reason: "arrays nested too deeply") }
                let elementType = try u32()
                let n = try count(of: "array length")
                var out: [GGUFValue] = []
                out.reserveCapacity(min(n, 1 << 20))
                for _ in 0..<n { out.append(try value(type: elementType, depth: depth + 1)) }
                return .array(out)
            case 10: return .uint(try scalar(UInt64.self))
            case 11: return .int(try scalar(Int64.self))
            case 12: return .float(Double(bitPattern: try scalar(UInt64.self)))
            default: throw GGUFError.malformed(path: path, reason: "unknown metadata value type \(type) at offset \(position - 4)")
            }
        }
    }
}
