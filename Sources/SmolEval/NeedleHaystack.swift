import Foundation
import SmolTensor
import SmolTokenizer

/// RULER's single needle in a haystack (niah_single): a key and a 7-digit value (`value_digits`) hidden as one
/// sentence at a depth of filler text, the model asked for the value. Items are cells of context
/// length × depth, `needles_per_cell` each with their own key and value; the context is built to
/// the length in the model's own tokens. Scored as RULER scores it: the value appears in the
/// greedy answer.
public enum NeedleHaystack {
    static let preamble = "Some special magic numbers are hidden within the following text. Make sure to memorize it. I will quiz you about the numbers afterwards."
    static let keys = ["apple", "river", "falcon", "marble", "lantern", "orchid", "glacier", "compass", "violin", "harbor",
                       "meadow", "copper", "saffron", "tundra", "beacon", "quartz", "willow", "ember", "canyon", "pepper",
                       "dolphin", "summit", "ivory", "thistle", "cobalt", "prairie", "sparrow", "garnet", "lagoon", "cedar"]

    static func needle(key: String, value: String) -> String { "One of the special magic numbers for \(key) is: \(value)." }
    static func question(key: String) -> String {
        "What is the special magic number for \(key) mentioned in the provided text? The special magic number for \(key) mentioned in the provided text is"
    }

    /// One item per (length, depth, draw): the key in `query`, the value in `answers`.
    static func items(spec: TaskSpec) -> [EvalItem] {
        var rng = RandomStream(seed: spec.fewshotSeed, purpose: "needle")
        var items: [EvalItem] = []
        for length in spec.lengths {
            for depth in spec.depths {
                for _ in 0..<spec.needlesPerCell {
                    var item = EvalItem(line: items.count + 1)
                    item.query = keys[rng.nextInt(below: keys.count)]
                    item.answers = [value(digits: spec.valueDigits, rng: &rng)]
                    item.needleLength = length
                    item.needleDepth = depth
                    items.append(item)
                }
            }
        }
        return items
    }

    /// A value of exactly `digits` digits, the first not 0 (RULER's 7 by default).
    static func value(digits: Int, rng: inout RandomStream) -> String {
        var low = 1
        for _ in 1..<digits { low *= 10 }
        return String(low + rng.nextInt(below: low * 9))
    }

    /// The haystack's sentences, in order ("." "!" "?" followed by white space end one).
    static func sentences(_ text: String) -> [String] {
        var out: [String] = [], current = ""
        var chars = Array(text.replacingOccurrences(of: "\n", with: " ")).makeIterator()
        var pending: Character? = nil
        while let c = pending ?? chars.next() {
            pending = nil
            current.append(c)
            if c == "." || c == "!" || c == "?" {
                guard let next = chars.next() else { break }
                if next == " " {
                    let s = current.trimmingCharacters(in: .whitespaces)
                    if !s.isEmpty { out.append(s) }
                    current = ""
                } else { pending = next }
            }
        }
        let s = current.trimmingCharacters(in: .whitespaces)
        if !s.isEmpty { out.append(s) }
        return out
    }

    /// The prompt of one item: filler sentences (from the start of the haystack, repeated if it
    /// is short) until the whole prompt holds `length` tokens, the needle between the sentences
    /// nearest `depth` percent of the filler.
    static func prompt(_ item: EvalItem, haystack: [String], sentenceTokens: [Int], tokenizer: BPETokenizer) throws -> String {
        let key = item.query, value = item.answers[0]
        let fixed = tokenizer.encode(preamble + "\n" + "\n" + question(key: key), addSpecialTokens: true).count
            + tokenizer.encode(" " + needle(key: key, value: value), addSpecialTokens: false).count
        let budget = item.needleLength - fixed
        guard budget > 0 else {
            throw EvalError("lengths: a context of \(item.needleLength) tokens cannot hold the question and the needle (\(fixed) tokens)")
        }
        var chosen: [String] = [], used = 0, i = 0
        while true {
            let k = i % haystack.count
            if used + sentenceTokens[k] > budget { break }
            chosen.append(haystack[k]); used += sentenceTokens[k]; i += 1
        }
        func build(_ filler: [String]) -> String {
            var f = filler
            let at = Int((Double(f.count) * item.needleDepth / 100).rounded())
            f.insert(needle(key: key, value: value), at: min(max(at, 0), f.count))
            return preamble + "\n" + f.joined(separator: " ") + "\n" + question(key: key)
        }
        // Merges across sentence boundaries can shift the count by a token or two: trim to fit.
        var text = build(chosen)
        while !chosen.isEmpty, tokenizer.encode(text, addSpecialTokens: true).count > item.needleLength {
            chosen.removeLast(); text = build(chosen)
        }
        return text
    }
}

/// Accuracy of one (length, depth) cell of a needle task.
public struct NeedleCell: Codable, Sendable, Equatable {
    public var length: Int
    public var depth: Double
    public var accuracy: Double
    public var n: Int

    static func grid(_ details: [ItemDetail]) -> [NeedleCell] {
        var cells: [NeedleCell] = []
        for d in details {
            guard let l = d.needleLength, let p = d.needleDepth else { continue }
            let hit = d.metrics["acc"] ?? 0
            if let i = cells.firstIndex(where: { $0.length == l && $0.depth == p }) {
                cells[i].accuracy = (cells[i].accuracy * Double(cells[i].n) + hit) / Double(cells[i].n + 1); cells[i].n += 1
            } else {
                cells.append(NeedleCell(length: l, depth: p, accuracy: hit, n: 1))
            }
        }
        return cells
    }

    /// A heat map: context length across, depth down, each cell shaded by its accuracy (red 0 → green 1).
    public static func heatmapSVG(task: String, cells: [NeedleCell]) -> String {
        let lengths = Array(Set(cells.map(\.length))).sorted(), depths = Array(Set(cells.map(\.depth))).sorted()
        let cw = 64, ch = 28, left = 70, top = 40
        let w = left + cw * lengths.count + 20, h = top + ch * depths.count + 50
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(w)\" height=\"\(h)\" font-family=\"sans-serif\" font-size=\"11\">"
        s += "<text x=\"\(left)\" y=\"18\" font-size=\"13\">\(task): needle accuracy by context length (tokens) and depth (%)</text>"
        for (i, l) in lengths.enumerated() {
            s += "<text x=\"\(left + i * cw + cw / 2)\" y=\"\(top + ch * depths.count + 16)\" text-anchor=\"middle\">\(l)</text>"
        }
        for (j, d) in depths.enumerated() {
            s += "<text x=\"\(left - 6)\" y=\"\(top + j * ch + ch / 2 + 4)\" text-anchor=\"end\">\(String(format: "%g", d))%</text>"
        }
        for c in cells {
            guard let i = lengths.firstIndex(of: c.length), let j = depths.firstIndex(of: c.depth) else { continue }
            let r = Int((1 - c.accuracy) * 215) + 40, g = Int(c.accuracy * 175) + 40
            s += "<rect class=\"cell\" data-length=\"\(c.length)\" data-depth=\"\(String(format: "%g", c.depth))\" data-accuracy=\"\(c.accuracy)\" data-n=\"\(c.n)\" "
            s += "x=\"\(left + i * cw)\" y=\"\(top + j * ch)\" width=\"\(cw - 2)\" height=\"\(ch - 2)\" fill=\"rgb(\(r),\(g),60)\"/>"
            s += "<text x=\"\(left + i * cw + cw / 2 - 1)\" y=\"\(top + j * ch + ch / 2 + 4)\" text-anchor=\"middle\" fill=\"white\">\(String(format: "%.2f", c.accuracy))</text>"
        }
        return s + "</svg>\n"
    }
}
