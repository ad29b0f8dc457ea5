import Foundation

/// A contiguous part of a prepare's input: bytes `range` of `files[file]` (nil: the whole file).
public struct InputPiece: Codable, Sendable, Equatable {
    public var file: Int
    public var range: Range<Int>?
}

/// Splits a prepare's inputs into one contiguous run of pieces per rank, of about equal bytes, for
/// `mpirun -np N smol data prepare`. Files are cut only where splitting the whole file would cut
/// too, so the ranks' records, in rank order, are exactly the single-process records:
/// - a plain .jsonl right after a newline;
/// - a plain .txt split at blank lines right after the "\n\n" that follows a byte other than a
///   newline (where the leftmost scan for "\n\n" must match);
/// - anything else (compressed files, another delimiter, whole-file documents) only between files.
public enum InputSplit {
    public static func pieces(files: [String], split: CorpusReader.TextSplit, ranks: Int) throws -> [[InputPiece]] {
        let sizes = try files.map { f -> Int in
            guard let size = (try? FileManager.default.attributesOfItem(atPath: f))?[.size] as? Int else {
                throw CorpusError(message: "\(f): cannot read its size")
            }
            return size
        }
        let total = sizes.reduce(0, +)
        // Cuts as (file, byte) positions in input order, each at or after the one before.
        var cuts: [(file: Int, byte: Int)] = [(0, 0)]
        for r in 1..<max(ranks, 1) {
            var target = total * r / ranks, file = 0
            while file < files.count - 1 && target >= sizes[file] { target -= sizes[file]; file += 1 }
            var cut = (file: file, byte: try boundary(in: files[file], size: sizes[file], atOrAfter: target, split: split))
            if let last = cuts.last, cut.file < last.file || (cut.file == last.file && cut.byte < last.byte) { cut = last }
            cuts.append(cut)
        }
        cuts.append((files.count, 0))
        return (0..<max(ranks, 1)).map { r in
            let from = cuts[r], to = cuts[r + 1]
            var out: [InputPiece] = []
            var f = from.file
            while f < files.count && (f < to.file || (f == to.file && to.byte > 0)) {
                let lo = f == from.file ? from.byte : 0
                let hi = f == to.file ? to.byte : sizes[f]
                if hi > lo || (sizes[f] == 0 && lo == 0 && f != to.file) {
                    out.append(InputPiece(file: f, range: lo == 0 && hi == sizes[f] ? nil : lo..<hi))
                }
                f += 1
            }
            return out
        }
    }

    /// The first place at or after `byte` where `file` may be cut, or its size when there is none.
    static func boundary(in file: String, size: Int, atOrAfter byte: Int, split: CorpusReader.TextSplit) throws -> Int {
        if byte <= 0 { return 0 }
        let name = CorpusInputStream.innerName(file)
        guard name == file else { return size }                       // compressed: whole
        let jsonl = name.hasSuffix(".jsonl")
        guard jsonl || { if case .blankLines = split { return true }; return false }() else { return size }
        // Read from a little before `byte` so a boundary straddling it is seen.
        let back = jsonl ? 1 : 3, start = max(0, byte - back)
        let input = try CorpusInputStream(path: file, range: start..<size)
        var window: [UInt8] = [], offset = start
        while case let chunk = try input.read(), !chunk.isEmpty {
            window += chunk
            var i = 0
            while i < window.count {
                if jsonl {
                    if window[i] == 0x0A, offset + i + 1 >= byte { return offset + i + 1 }
                } else if i + 2 < window.count {
                    if window[i] != 0x0A, window[i + 1] == 0x0A, window[i + 2] == 0x0A, offset + i + 3 >= byte { return offset + i + 3 }
                } else { break }
                i += 1
            }
            offset += i
            window.removeFirst(i)
        }
        return size
    }
}
