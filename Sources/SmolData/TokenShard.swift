import Foundation

/// SmolTrain's token shard (docs/FORMATS.md), little-endian:
///
///     0   magic "SMOLSHRD"              8 bytes
///     8   version (1, or 2 with flags)  UInt32
///     12  bytes per token (2 or 4)      UInt32
///     16  token count N                 UInt64
///     24  document count D              UInt64
///     32  vocabulary size               UInt64
///     40  flags (version 2)             UInt32; bit 0: a loss mask follows the document starts
///     44  reserved (zero)               20 bytes
///     64  tokens                        N × (2 or 4) bytes, padded with zeros to a multiple of 8
///     …   document starts               (D + 1) × UInt64; start[i] = index of document i's first
///                                        token, start[D] = N
///     …   loss mask (flag bit 0)        N bytes, 1 where the token carries loss as a target (SFT:
///                                        assistant content and its end-of-turn), padded to 8
///
/// A pretraining document's tokens end with the end-of-text id; a chat shard's documents are
/// conversations. Version 1 files (no flags) are still read. The file is memory-mapped for reading.
public enum ShardError: Error, CustomStringConvertible {
    case io(path: String, reason: String)
    case malformed(path: String, reason: String)
    public var description: String {
        switch self {
        case let .io(path, reason): return "\(path): \(reason)"
        case let .malformed(path, reason): return "\(path): not a valid token shard: \(reason)"
        }
    }
}

public final class TokenShard {
    public static let magic = Array("SMOLSHRD".utf8)
    public let path: String
    public let tokenCount: Int
    public let documentCount: Int
    public let vocabSize: Int
    public let bytesPerToken: Int
    private let base: UnsafeMutableRawPointer
    private let mappedLength: Int
    private let docStartsOffset: Int
    /// Byte offset of the loss mask, nil when the shard has none.
    private let maskOffset: Int?
    public var hasLossMask: Bool { maskOffset != nil }

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        if fd < 0 { throw ShardError.io(path: path, reason: "cannot open shard: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        fstat(fd, &st)
        let size = Int(st.st_size)
        if size < 64 { throw ShardError.malformed(path: path, reason: "file is \(size) bytes, shorter than the 64-byte header") }
        guard let m = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), m != MAP_FAILED else {
            throw ShardError.io(path: path, reason: "mmap failed")
        }
        base = m; mappedLength = size
        let header = UnsafeRawBufferPointer(start: m, count: 64)
        func fail(_ r: String) -> ShardError { munmap(m, size); return .malformed(path: path, reason: r) }
        if Array(header[0..<8]) != TokenShard.magic { throw fail("wrong magic (expected SMOLSHRD)") }
        let version = header.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
        if version != 1 && version != 2 { throw fail("unsupported version \(version) (this smol reads 1 and 2)") }
        let flags = version == 2 ? header.loadUnaligned(fromByteOffset: 40, as: UInt32.self) : 0
        if flags & ~1 != 0 { throw fail("unknown flags \(flags)") }
        bytesPerToken = Int(header.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
        if bytesPerToken != 2 && bytesPerToken != 4 { throw fail("bytes per token is \(bytesPerToken), expected 2 or 4") }
        let n = header.loadUnaligned(fromByteOffset: 16, as: UInt64.self)
        let d = header.loadUnaligned(fromByteOffset: 24, as: UInt64.self)
        let v = header.loadUnaligned(fromByteOffset: 32, as: UInt64.self)
        guard n < UInt64(size), d < UInt64(size) else { throw fail("token count \(n) or document count \(d) exceeds the file size") }
        tokenCount = Int(n); documentCount = Int(d); vocabSize = Int(v)
        docStartsOffset = 64 + (tokenCount * bytesPerToken + 7) / 8 * 8
        let startsEnd = docStartsOffset + (documentCount + 1) * 8
        maskOffset = flags & 1 != 0 ? startsEnd : nil
        let expected = startsEnd + (flags & 1 != 0 ? (tokenCount + 7) / 8 * 8 : 0)
        if size != expected { throw fail("file is \(size) bytes, but its header implies \(expected) (truncated or corrupt)") }
        let starts = (m + docStartsOffset).assumingMemoryBound(to: UInt64.self)
        if starts[0] != 0 || starts[documentCount] != n { throw fail("document index does not span the tokens") }
        for i in 0..<documentCount where starts[i] > starts[i + 1] { throw fail("document index is not sorted at document \(i)") }
    }

    deinit { munmap(base, mappedLength) }

    @inline(__always)
    public func token(_ i: Int) -> Int32 {
        bytesPerToken == 2 ? Int32((base + 64).assumingMemoryBound(to: UInt16.self)[i])
                           : Int32(bitPattern: (base + 64).assumingMemoryBound(to: UInt32.self)[i])
    }

    /// Whether token `i` carries loss as a target (always true without a mask).
    @inline(__always)
    public func carriesLoss(_ i: Int) -> Bool {
        guard let o = maskOffset else { return true }
        return (base + o).assumingMemoryBound(to: UInt8.self)[i] != 0
    }

    public func documentStart(_ i: Int) -> Int { Int((base + docStartsOffset).assumingMemoryBound(to: UInt64.self)[i]) }

    /// Index of the document containing token `t` (binary search over the document starts).
    public func document(containing t: Int) -> Int {
        var lo = 0, hi = documentCount - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if documentStart(mid) <= t { lo = mid } else { hi = mid - 1 }
        }
        return lo
    }

    /// Largest token id in the shard (for checking it against a model's vocabulary).
    public func maxToken() -> Int32 {
        var m: Int32 = 0
        for i in 0..<tokenCount { m = max(m, token(i)) }
        return m
    }

    /// Writes documents (each already ending with its end-of-text id) as a shard, atomically;
    /// with `lossMasks` (one per document, 1 = the token carries loss) as a version 2 shard.
    public static func write(documents: [[Int32]], lossMasks: [[UInt8]]? = nil, vocabSize: Int, to path: String) throws {
        let width = vocabSize <= 65_536 ? 2 : 4
        let total = documents.reduce(0) { $0 + $1.count }
        if let masks = lossMasks, masks.count != documents.count || zip(masks, documents).contains(where: { $0.count != $1.count }) {
            throw ShardError.malformed(path: path, reason: "one loss mask per document, as long as the document, is needed")
        }
        var data = Data(capacity: 64 + total * (width + 1) + (documents.count + 1) * 8 + 16)
        func append<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { data.append(contentsOf: $0) } }
        data.append(contentsOf: magic)
        append(UInt32(lossMasks == nil ? 1 : 2)); append(UInt32(width)); append(UInt64(total)); append(UInt64(documents.count)); append(UInt64(vocabSize))
        append(UInt32(lossMasks == nil ? 0 : 1))
        data.append(contentsOf: [UInt8](repeating: 0, count: 20))
        for doc in documents {
            for t in doc {
                guard t >= 0 && Int(t) < vocabSize else { throw ShardError.malformed(path: path, reason: "token \(t) outside vocabulary \(vocabSize)") }
                if width == 2 { append(UInt16(t)) } else { append(UInt32(t)) }
            }
        }
        while data.count % 8 != 0 { data.append(0) }
        var start: UInt64 = 0
        append(start)
        for doc in documents { start += UInt64(doc.count); append(start) }
        if let masks = lossMasks {
            for m in masks { data.append(contentsOf: m.map { $0 != 0 ? 1 : 0 }) }
            while data.count % 8 != 0 { data.append(0) }
        }
        let tmp = path + ".tmp"
        guard FileManager.default.createFile(atPath: tmp, contents: data) else {
            throw ShardError.io(path: path, reason: "cannot write shard")
        }
        if rename(tmp, path) != 0 { throw ShardError.io(path: path, reason: "cannot rename \(tmp) into place") }
    }
}
