import Foundation
import SmolTensor

/// Hugging Face safetensors: 8-byte little-endian header length, a JSON header
/// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {string: string}}, then raw
/// little-endian data. We write F32 only and read F32 (F16/BF16 are converted on read).
public enum SafetensorsError: Error, CustomStringConvertible {
    case io(path: String, reason: String)
    case malformed(path: String, reason: String)
    case missingTensor(path: String, name: String)
    case shapeMismatch(path: String, name: String, expected: [Int], found: [Int])

    public var description: String {
        switch self {
        case let .io(path, reason): return "\(path): \(reason)"
        case let .malformed(path, reason): return "\(path): not a valid safetensors file: \(reason)"
        case let .missingTensor(path, name): return "\(path): tensor '\(name)' is missing"
        case let .shapeMismatch(path, name, expected, found):
            return "\(path): tensor '\(name)' has shape \(found), expected \(expected)"
        }
    }
}

public struct SafetensorsEntry: Sendable {
    public let name: String
    public let dtype: String
    public let shape: [Int]
    public let begin: Int, end: Int
}

/// A safetensors file read into memory, with its header validated against the file size.
public struct SafetensorsFile {
    public let path: String
    public let entries: [String: SafetensorsEntry]
    public let metadata: [String: String]
    let data: Data
    let dataStart: Int

    public init(path: String) throws {
        // Memory-mapped: a large checkpoint is paged in as tensors are copied out.
        guard let data = try? Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) else {
            throw SafetensorsError.io(path: path, reason: "cannot read file")
        }
        self.path = path
        self.data = data
        guard data.count >= 8 else { throw SafetensorsError.malformed(path: path, reason: "file is \(data.count) bytes, shorter than the 8-byte header length") }
        let headerLength = data.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 0, as: UInt64.self)) }
        guard headerLength <= UInt64(data.count - 8), headerLength <= 100_000_000 else {
            throw SafetensorsError.malformed(path: path, reason: "header length \(headerLength) runs past the end of the \(data.count)-byte file")
        }
        dataStart = 8 + Int(headerLength)
        let headerData = data.subdata(in: 8..<dataStart)
        // Decoded with JSONDecoder: casting JSONSerialization's numbers to [Int] crashed in
        // optimised builds for offsets above 2^26 (swift-corelibs-foundation bridging).
        struct Entry: Decodable { let dtype: String?; let shape: [Int]?; let data_offsets: [Int]? }
        enum Value: Decodable {
            case entry(Entry), metadata([String: String]), other
            init(from decoder: Decoder) throws {
                if let m = try? [String: String](from: decoder) { self = .metadata(m) }
                else if let e = try? Entry(from: decoder) { self = .entry(e) }
                else { self = .other }
            }
        }
        guard let header = try? JSONDecoder().decode([String: Value].self, from: headerData) else {
            throw SafetensorsError.malformed(path: path, reason: "header is not a JSON object")
        }
        var entries: [String: SafetensorsEntry] = [:]
        var metadata: [String: String] = [:]
        let dataSize = data.count - dataStart
        for (name, value) in header {
            if name == "__metadata__" {
                if case let .metadata(m) = value { metadata = m }
                continue
            }
            guard case let .entry(info) = value, let dtype = info.dtype, let shape = info.shape,
                  let offsets = info.data_offsets, offsets.count == 2 else {
                throw SafetensorsError.malformed(path: path, reason: "entry '\(name)' lacks dtype, shape or data_offsets")
            }
            let width: Int
            switch dtype { case "F32": width = 4; case "F16", "BF16": width = 2
            default: throw SafetensorsError.malformed(path: path, reason: "tensor '\(name)' has unsupported dtype \(dtype)") }
            guard shape.allSatisfy({ $0 >= 0 }), offsets[0] >= 0, offsets[0] <= offsets[1], offsets[1] <= dataSize else {
                throw SafetensorsError.malformed(path: path, reason: "tensor '\(name)' data_offsets \(offsets) lie outside the \(dataSize)-byte data section")
            }
            let (elements, overflow) = shape.reduce((1, false)) { acc, d in
                let (v, o) = acc.0.multipliedReportingOverflow(by: d); return (v, acc.1 || o)
            }
            guard !overflow, elements * width == offsets[1] - offsets[0] else {
                throw SafetensorsError.malformed(path: path, reason: "tensor '\(name)' shape \(shape) does not match its \(offsets[1] - offsets[0]) bytes")
            }
            entries[name] = SafetensorsEntry(name: name, dtype: dtype, shape: shape, begin: offsets[0], end: offsets[1])
        }
        self.entries = entries
        self.metadata = metadata
    }

    /// Copies tensor `name` as float32 into `destination`, checking its shape.
    public func read(_ name: String, shape: [Int], into destination: UnsafeMutablePointer<Float>) throws {
        guard let e = entries[name] else { throw SafetensorsError.missingTensor(path: path, name: name) }
        guard e.shape == shape else { throw SafetensorsError.shapeMismatch(path: path, name: name, expected: shape, found: e.shape) }
        let count = shape.reduce(1, *)
        data.withUnsafeBytes { raw in
            let base = raw.baseAddress! + dataStart + e.begin
            switch e.dtype {
            case "F32":
                memcpy(destination, base, count * 4)
            case "F16":
                for i in 0..<count { destination[i] = Float(Float16(bitPattern: base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
            default: // BF16
                for i in 0..<count {
                    destination[i] = Float(bitPattern: UInt32(base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16)
                }
            }
        }
    }

    public func array(_ name: String) throws -> [Float] {
        guard let e = entries[name] else { throw SafetensorsError.missingTensor(path: path, name: name) }
        var out = [Float](repeating: 0, count: e.shape.reduce(1, *))
        try out.withUnsafeMutableBufferPointer { try read(name, shape: e.shape, into: $0.baseAddress!) }
        return out
    }
}

/// Writes float32 tensors as safetensors, fsyncing before it returns.
public enum SafetensorsWriter {
    public struct Tensor {
        public let name: String, shape: [Int]
        public let data: UnsafePointer<Float>
        public init(name: String, shape: [Int], data: UnsafePointer<Float>) { self.name = name; self.shape = shape; self.data = data }
    }

    public static func write(_ tensors: [Tensor], metadata: [String: String] = [:], to path: String) throws {
        var header: [String: Any] = [:]
        var offset = 0
        for t in tensors {
            let bytes = t.shape.reduce(1, *) * 4
            header[t.name] = ["dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + bytes]] as [String: Any]
            offset += bytes
        }
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }   // pad with spaces so the data is 8-byte aligned
        let file = try FileSink(path: path)
        var length = UInt64(json.count).littleEndian
        try withUnsafeBytes(of: &length) { try file.write($0) }
        try json.withUnsafeBytes { try file.write($0) }
        for t in tensors {
            try file.write(UnsafeRawBufferPointer(start: t.data, count: t.shape.reduce(1, *) * 4))
        }
        try file.syncAndClose()
    }
}

/// A file written with POSIX calls so that it can be fsynced before it is renamed into place.
public final class FileSink {
    let fd: Int32
    public let path: String

    public init(path: String) throws {
        self.path = path
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        if fd < 0 { throw SafetensorsError.io(path: path, reason: "cannot create file: \(String(cString: strerror(errno)))") }
    }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            // Chunks of at most 1 MiB, so a fault injected mid-file lands mid-file.
            let n = Foundation.write(fd, bytes.baseAddress! + done, min(bytes.count - done, 1 << 20))
            if n < 0 {
                if errno == EINTR { continue }
                throw SafetensorsError.io(path: path, reason: "write failed: \(String(cString: strerror(errno)))")
            }
            done += n
            FaultInjection.afterWrite(bytes: n, path: path)
        }
    }

    public func write(_ data: Data) throws { try data.withUnsafeBytes { try write($0) } }

    /// Writes `data` as the whole file at `path`, fsynced before it returns.
    public static func writeDurably(_ data: Data, to path: String) throws {
        let sink = try FileSink(path: path)
        try sink.write(data)
        try sink.syncAndClose()
    }

    public func syncAndClose() throws {
        defer { close(fd) }
        if fsync(fd) != 0 { throw SafetensorsError.io(path: path, reason: "fsync failed: \(String(cString: strerror(errno)))") }
    }

    /// fsyncs a directory so that a rename inside it is durable.
    public static func syncDirectory(_ path: String) {
        let fd = open(path, O_RDONLY)
        if fd >= 0 { fsync(fd); close(fd) }
    }
}

/// Test hook: SMOL_FAULT_KILL_AFTER_BYTES=N sends SIGKILL to this process once N bytes have been
/// written to files whose path contains SMOL_FAULT_PATH_CONTAINS (default ".tmp"), to prove that
/// a checkpoint killed mid-write never replaces the last good one.
public enum FaultInjection {
    nonisolated(unsafe) static var written = 0
    static let limit: Int? = ProcessInfo.processInfo.environment["SMOL_FAULT_KILL_AFTER_BYTES"].flatMap(Int.init)
    static let needle = ProcessInfo.processInfo.environment["SMOL_FAULT_PATH_CONTAINS"] ?? ".tmp"

    static func afterWrite(bytes: Int, path: String) {
        guard let limit, path.contains(needle) else { return }
        written += bytes
        if written >= limit { kill(getpid(), SIGKILL) }
    }
}
