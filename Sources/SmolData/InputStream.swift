import CZlib
import CZstd
import Foundation

/// A corpus file read in bounded chunks, decompressed on the fly by its name: `.gz` through zlib,
/// `.zst` through libzstd, anything else as it is. Memory is one chunk, whatever the file's size.
/// A corrupt or truncated archive is an error naming the file and the compressed offset.
public final class CorpusInputStream {
    public let path: String
    /// 4 MiB; SMOL_READ_CHUNK_BYTES sets another size (the tests cut records across chunks with tiny ones).
    public static let chunkBytes = ProcessInfo.processInfo.environment["SMOL_READ_CHUNK_BYTES"].flatMap { Int($0) }.map { max(1, $0) } ?? 1 << 22
    private enum Kind { case plain(Int32), gzip(gzFile), zstd(Int32, OpaquePointer) }
    private var kind: Kind
    private var compressed = [UInt8](repeating: 0, count: 0)
    private var inPos = 0, inLen = 0, inOffset = 0, finishedFrame = true, eof = false
    /// Bytes left to read in a byte range of a plain file (nil: to the end).
    private var remaining: Int?
    /// Newline bytes among those read so far (`countNewlines`).
    public private(set) var newlines = 0
    public var countNewlines = false

    /// The file, or only bytes `range` of it (plain files only: a compressed stream has no byte
    /// positions to start at).
    public init(path: String, range: Range<Int>? = nil) throws {
        self.path = path
        if let range, path.hasSuffix(".gz") || path.hasSuffix(".zst") {
            throw CorpusError(message: "\(path): a compressed file is read whole, not from byte \(range.lowerBound)")
        }
        if path.hasSuffix(".gz") {
            guard let f = gzopen(path, "rb") else { throw CorpusError(message: "\(path): cannot open") }
            gzbuffer(f, 1 << 20)
            kind = .gzip(f)
        } else if path.hasSuffix(".zst") {
            let fd = open(path, O_RDONLY)
            guard fd >= 0, let ctx = ZSTD_createDCtx() else { throw CorpusError(message: "\(path): cannot open") }
            compressed = [UInt8](repeating: 0, count: ZSTD_DStreamInSize())
            kind = .zstd(fd, ctx)
        } else {
            let fd = open(path, O_RDONLY)
            guard fd >= 0 else { throw CorpusError(message: "\(path): cannot open (\(String(cString: strerror(errno))))") }
            kind = .plain(fd)
            if let range {
                guard lseek(fd, off_t(range.lowerBound), SEEK_SET) == off_t(range.lowerBound) else {
                    close(fd); throw CorpusError(message: "\(path): cannot seek to byte \(range.lowerBound)")
                }
                remaining = range.count
            }
        }
    }

    deinit {
        switch kind {
        case let .plain(fd): close(fd)
        case let .gzip(f): gzclose(f)
        case let .zstd(fd, ctx): close(fd); ZSTD_freeDCtx(ctx)
        }
    }

    /// Whether a path names a compressed corpus file and the name it has inside (for its format).
    public static func innerName(_ path: String) -> String {
        for ext in [".gz", ".zst"] where path.hasSuffix(ext) { return String(path.dropLast(ext.count)) }
        return path
    }

    /// The next chunk of decompressed bytes (at most `chunkBytes`), empty at the end.
    public func read() throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: CorpusInputStream.chunkBytes)
        let n = try out.withUnsafeMutableBytes { try fill($0.baseAddress!, capacity: min($0.count, remaining ?? Int.max)) }
        out.removeLast(out.count - n)
        if let r = remaining { remaining = r - n }
        if countNewlines { newlines += CorpusInputStream.newlines(in: out) }
        return out
    }

    /// The newline bytes in `bytes` (memchr from one to the next).
    public static func newlines(in bytes: [UInt8]) -> Int {
        bytes.withUnsafeBufferPointer { b in
            guard var p = UnsafeRawPointer(b.baseAddress) else { return 0 }
            let end = p + b.count
            var n = 0
            while p < end, let q = memchr(p, 0x0A, end - p) { n += 1; p = UnsafeRawPointer(q) + 1 }
            return n
        }
    }

    private func fill(_ buffer: UnsafeMutableRawPointer, capacity: Int) throws -> Int {
        switch kind {
        case let .plain(fd):
            var got = 0
            while got < capacity {
                let n = Foundation.read(fd, buffer + got, capacity - got)
                if n < 0 { if errno == EINTR { continue }; throw CorpusError(message: "\(path): read failed at byte \(got) (\(String(cString: strerror(errno))))") }
                if n == 0 { break }
                got += n
            }
            return got
        case let .gzip(f):
            let n = gzread(f, buffer, UInt32(capacity))
            if n > 0 && gzdirect(f) == 1 { throw CorpusError(message: "\(path): not gzip data (the file ends in .gz)") }
            var code: Int32 = 0
            let message = String(cString: gzerror(f, &code))
            if n < 0 || (code != Z_OK && code != Z_BUF_ERROR) || (n == 0 && code == Z_BUF_ERROR) {
                throw CorpusError(message: "\(path): corrupt or truncated gzip data at compressed byte \(gzoffset(f)) (\(message.isEmpty ? "unexpected end of file" : message))")
            }
            return Int(n)
        case let .zstd(fd, ctx):
            var got = 0
            while got < capacity {
                if inPos == inLen && !eof {
                    let n = compressed.withUnsafeMutableBytes { Foundation.read(fd, $0.baseAddress!, $0.count) }
                    if n < 0 { throw CorpusError(message: "\(path): read failed at compressed byte \(inOffset)") }
                    if n == 0 { eof = true } else { inPos = 0; inLen = n }
                }
                if eof && inPos == inLen {
                    if !finishedFrame { throw CorpusError(message: "\(path): truncated zstd data at compressed byte \(inOffset) (the last frame does not end)") }
                    return got
                }
                var output = ZSTD_outBuffer(dst: buffer + got, size: capacity - got, pos: 0)
                let before = inPos
                let hint = compressed.withUnsafeBytes { raw -> Int in
                    var input = ZSTD_inBuffer(src: raw.baseAddress!, size: inLen, pos: inPos)
                    let r = ZSTD_decompressStream(ctx, &output, &input)
                    inPos = input.pos
                    return r
                }
                if ZSTD_isError(hint) != 0 {
                    throw CorpusError(message: "\(path): corrupt zstd data at compressed byte \(inOffset) (\(String(cString: ZSTD_getErrorName(hint))))")
                }
                inOffset += inPos - before
                finishedFrame = hint == 0
                got += output.pos
            }
            return got
        }
    }
}

/// Splits a stream of chunks into records at each `delimiter` (dropped), exactly as splitting the
/// whole input would (leftmost, non-overlapping; the last part kept unless it is empty, or the
/// input was empty). Holds one unfinished record plus one chunk.
public struct RecordSplitter {
    let delimiter: [UInt8]
    private var buffer: [UInt8] = []
    private var scanned = 0
    private var emitted = false

    public init(delimiter: [UInt8]) { precondition(!delimiter.isEmpty); self.delimiter = delimiter }

    /// Adds a chunk and calls `body` with every record it completes.
    public mutating func feed(_ chunk: [UInt8], _ body: (ArraySlice<UInt8>) throws -> Void) rethrows {
        buffer += chunk
        let d = delimiter.count, first = delimiter[0]
        var start = 0, i = scanned
        var cuts: [Int] = []
        buffer.withUnsafeBufferPointer { b in
            let n = b.count, base = b.baseAddress!
            while i + d <= n {
                // memchr finds the delimiter's first byte; the rest is compared there.
                guard let p = memchr(base + i, Int32(first), n - i - d + 1) else { i = n - d + 1; break }
                let j = base.distance(to: p.assumingMemoryBound(to: UInt8.self))
                if d == 1 || delimiter.withUnsafeBufferPointer({ memcmp(base + j, $0.baseAddress!, d) == 0 }) {
                    cuts.append(j); i = j + d
                } else { i = j + 1 }
            }
        }
        for j in cuts {
            try body(buffer[start..<j]); emitted = true
            start = j + d
        }
        buffer.removeFirst(start)
        scanned = i - start
    }

    /// The input ended: the last record, if any.
    public mutating func finish(_ body: (ArraySlice<UInt8>) throws -> Void) rethrows {
        if !buffer.isEmpty || !emitted { try body(buffer[...]) }
        buffer = []; scanned = 0
    }
}
