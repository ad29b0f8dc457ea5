/// Pre-tokenisation: splitting text into pieces that BPE merges never cross, as Hugging Face
/// `tokenizers` does. Supported: ByteLevel (with GPT-2's split pattern), Digits, Sequence, and Split
/// with GPT-2's pattern.
public indirect enum PreTokenizer: Sendable {
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    case digits(individual: Bool)
    case gpt2Split
    case sequence([PreTokenizer])

    /// Splits each piece further; pieces are arrays of Unicode scalars.
    func split(_ pieces: [[Unicode.Scalar]]) -> [[Unicode.Scalar]] {
        switch self {
        case let .sequence(list):
            return list.reduce(pieces) { $1.split($0) }
        case let .digits(individual):
            return pieces.flatMap { Self.splitDigits($0, individual: individual) }
        case .gpt2Split:
            return pieces.flatMap { p in Self.gpt2Ranges(p).map { Array(p[$0]) } }
        case let .byteLevel(addPrefixSpace, useRegex):
            return pieces.flatMap { p -> [[Unicode.Scalar]] in
                var p = p
                if addPrefixSpace, p.first != " " { p.insert(" ", at: 0) }
                return useRegex ? Self.gpt2Ranges(p).map { Array(p[$0]) } : [p]
            }
        }
    }

    /// Whether pieces become byte-level strings before BPE.
    var isByteLevel: Bool {
        switch self {
        case .byteLevel: return true
        case let .sequence(list): return list.contains { $0.isByteLevel }
        default: return false
        }
    }

    @inline(__always) static func isLetter(_ u: Unicode.Scalar) -> Bool {
        if u.isASCII { return (u.value | 0x20) >= 0x61 && (u.value | 0x20) <= 0x7A }
        switch u.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }

    @inline(__always) static func isNumber(_ u: Unicode.Scalar) -> Bool {
        if u.isASCII { return u.value >= 0x30 && u.value <= 0x39 }
        switch u.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }

    @inline(__always) static func isSpace(_ u: Unicode.Scalar) -> Bool {
        if u.isASCII { return u == " " || (u.value >= 9 && u.value <= 13) }
        return u.properties.isWhitespace
    }

    @inline(__always) static func isOther(_ u: Unicode.Scalar) -> Bool { !isSpace(u) && !isLetter(u) && !isNumber(u) }

    /// GPT-2's pattern, matched by hand with the same leftmost-first alternation and backtracking:
    /// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    static func gpt2Ranges(_ s: [Unicode.Scalar]) -> [Range<Int>] {
        var out: [Range<Int>] = []
        let n = s.count
        var i = 0
        func run(from j: Int, _ pred: (Unicode.Scalar) -> Bool) -> Int { var k = j; while k < n && pred(s[k]) { k += 1 }; return k }
        while i < n {
            let c = s[i]
            if c == "'" && i + 1 < n {
                let a = s[i + 1]
                if a == "s" || a == "t" || a == "m" || a == "d" { out.append(i..<(i + 2)); i += 2; continue }
                if i + 2 < n {
                    let b = s[i + 2]
                    if (a == "r" && b == "e") || (a == "v" && b == "e") || (a == "l" && b == "l") { out.append(i..<(i + 3)); i += 3; continue }
                }
            }
            var matched = false
            for pred in [isLetter, isNumber, isOther] as [(Unicode.Scalar) -> Bool] {
                // " ?X+": with the optional space first, then without it.
                if c == " " && i + 1 < n && pred(s[i + 1]) { out.append(i..<run(from: i + 1, pred)) }
                else if pred(c) { out.append(i..<run(from: i, pred)) }
                else { continue }
                i = out.last!.upperBound; matched = true; break
            }
            if matched { continue }
            // whitespace: \s+(?!\S) backs off one character when a non-space follows the run
            let end = run(from: i, isSpace)
            if end == n || end - i == 1 { out.append(i..<end); i = end }
            else { out.append(i..<(end - 1)); i = end - 1 }
        }
        return out
    }

    static func splitDigits(_ p: [Unicode.Scalar], individual: Bool) -> [[Unicode.Scalar]] {
        var out: [[Unicode.Scalar]] = []
        var current: [Unicode.Scalar] = []
        var currentIsDigit = false
        for u in p {
            let d = isNumber(u)
            if d && individual {
                if !current.isEmpty { out.append(current); current = [] }
                out.append([u])
                continue
            }
            if !current.isEmpty && d != currentIsDigit { out.append(current); current = [] }
            current.append(u); currentIsDigit = d
        }
        if !current.isEmpty { out.append(current) }
        return out
    }
}
