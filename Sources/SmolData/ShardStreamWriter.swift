import Foundation

/// Writes one token shard (docs/FORMATS.md) as documents arrive: tokens go straight to the file,
/// loss masks to a side file, and only the document starts (8 bytes a document) stay in memory; at
/// `close` the starts and masks follow the tokens and the header gets its counts. The bytes are
/// those `TokenShard.write` gives for the same documents. Every write's failure (a full disk) is an
/// error naming the file.
public final class ShardStreamWriter {
    public let path: String
    let vocabSize: Int, width: Int, masked: Bool
    private var file: UnsafeMutablePointer<FILE>?
    private var maskFile: UnsafeMutablePointer<FILE>?
    private var starts: [UInt64] = [0]
    public private(set) var tokens = 0
    public var documents: Int { starts.count - 1 }
    private var scratch: [UInt8] = []

    public init(path: String, vocabSize: Int, masked: Bool) throws {
        self.path = path; self.vocabSize = vocabSize; self.masked = masked
        width = vocabSize <= 65_536 ? 2 : 4
        guard let f = fopen(path, "wb") else { throw ShardError.io(path: path, reason: "cannot create (\(String(cString: strerror(errno))))") }
        file = f
        setvbuf(f, nil, _IOFBF, 1 << 20)
        if masked {
            guard let m = fopen(path + ".mask", "w+b") else { throw ShardError.io(path: path + ".mask", reason: "cannot create") }
            maskFile = m
        }
        try put([UInt8](repeating: 0, count: 64), to: f, path: path)   // the header, filled in by close()
    }

    deinit {
        if let file { fclose(file) }
        if let maskFile { fclose(maskFile); unlink(path + ".mask") }
    }

    private func put(_ bytes: [UInt8], to f: UnsafeMutablePointer<FILE>, path: String) throws {
        if bytes.isEmpty { return }
        let n = bytes.withUnsafeBytes { fwrite($0.baseAddress!, 1, $0.count, f) }
        if n != bytes.count { throw ShardError.io(path: path, reason: "write failed (\(String(cString: strerror(errno))))") }
    }

    public func add(_ document: [Int32], lossMask: [UInt8]? = nil) throws {
        guard let file else { throw ShardError.io(path: path, reason: "shard already closed") }
        if masked != (lossMask != nil) || (lossMask.map { $0.count != document.count } ?? false) {
            throw ShardError.malformed(path: path, reason: "one loss mask per document, as long as the document, is needed")
        }
        scratch.removeAll(keepingCapacity: true)
        scratch.reserveCapacity(document.count * width)
        for t in document {
            guard t >= 0 && Int(t) < vocabSize else { throw ShardError.malformed(path: path, reason: "token \(t) outside vocabulary \(vocabSize)") }
            let v = UInt32(t)
            scratch.append(UInt8(v & 0xff)); scratch.append(UInt8((v >> 8) & 0xff))
            if width == 4 { scratch.append(UInt8((v >> 16) & 0xff)); scratch.append(UInt8(v >> 24)) }
        }
        try put(scratch, to: file, path: path)
        if let lossMask, let maskFile { try put(lossMask.map { $0 != 0 ? 1 : 0 }, to: maskFile, path: path + ".mask") }
        tokens += document.count
        starts.append(UInt64(tokens))
    }

    /// Writes the document starts and masks after the tokens, the header's counts, and closes.
    public func close() throws {
        guard let f = file else { return }
        func pad(_ written: Int) throws { if written % 8 != 0 { try put([UInt8](repeating: 0, count: 8 - written % 8), to: f, path: path) } }
        try pad(tokens * width)
        var index = [UInt8](); index.reserveCapacity(starts.count * 8)
        for s in starts { withUnsafeBytes(of: s.littleEndian) { index.append(contentsOf: $0) } }
        try put(index, to: f, path: path)
        if let m = maskFile {
            rewind(m)
            var chunk = [UInt8](repeating: 0, count: 1 << 20)
            while true {
                let n = chunk.withUnsafeMutableBytes { fread($0.baseAddress!, 1, $0.count, m) }
                if n == 0 { break }
                try put(Array(chunk[0..<n]), to: f, path: path)
            }
            if ferror(m) != 0 { throw ShardError.io(path: path + ".mask", reason: "read failed") }
            try pad(tokens)
        }
        var header = TokenShard.magic
        func append<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { header.append(contentsOf: $0) } }
        append(UInt32(masked ? 2 : 1)); append(UInt32(width)); append(UInt64(tokens)); append(UInt64(documents)); append(UInt64(vocabSize))
        append(UInt32(masked ? 1 : 0))
        header += [UInt8](repeating: 0, count: 20)
        if fseek(f, 0, SEEK_SET) != 0 { throw ShardError.io(path: path, reason: "cannot seek to the header") }
        try put(header, to: f, path: path)
        file = nil
        if fflush(f) != 0 || fsync(fileno(f)) != 0 {
            fclose(f)
            throw ShardError.io(path: path, reason: "write failed (\(String(cString: strerror(errno))))")
        }
        if fclose(f) != 0 { throw ShardError.io(path: path, reason: "close failed (\(String(cString: strerror(errno))))") }
        if let m = maskFile { fclose(m); maskFile = nil; unlink(path + ".mask") }
    }
}
