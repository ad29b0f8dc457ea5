/// Pre-tokenisation: splitting text into pieces that BPE merges never cross, as Hugging Face
/// `tokenizers` does. Supported: ByteLevel (with GPT-2's split pattern), Digits, Sequence, and Split
/// with GPT-2's pattern or the Llama-3 / Qwen2 pattern (they differ only in how many digits group).
public indirect enum PreTokenizer: Sendable {
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    case digits(individual: Bool)
    case gpt2Split
    case llama3Split(maxDigits: Int)
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
        case let .llama3Split(maxDigits):
            return pieces.flatMap { p in Self.llama3Ranges(p, maxDigits: maxDigits).map { Array(p[$0]) } }
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

    /// Length of a contraction ('s 't 're 've 'm 'll 'd) starting at `i`, or nil. `foldCase` matches
    /// case-insensitively as the regex crate folds for (?i:…): also 'ſ (U+017F) for 's.
    @inline(__always) static func contractionLength(_ s: [Unicode.Scalar], at i: Int, foldCase: Bool) -> Int? {
        let n = s.count
        guard s[i] == "'" && i + 1 < n else { return nil }
        func fold(_ u: Unicode.Scalar) -> Unicode.Scalar {
            guard foldCase else { return u }
            if u.value == 0x17F { return "s" }
            return u.value >= 0x41 && u.value <= 0x5A ? Unicode.Scalar(u.value | 0x20)! : u
        }
        let a = fold(s[i + 1])
        if a == "s" || a == "t" || a == "m" || a == "d" { return 2 }
        guard i + 2 < n else { return nil }
        let b = fold(s[i + 2])
        return (a == "r" && b == "e") || (a == "v" && b == "e") || (a == "l" && b == "l") ? 3 : nil
    }

    /// End of `\s+(?!\S)|\s+` for the whitespace run [i, runEnd): the run backs off one character when
    /// a non-space follows it, unless that would leave it empty.
    @inline(__always) static func whitespaceEnd(from i: Int, runEnd: Int, count n: Int) -> Int {
        runEnd == n || runEnd - i == 1 ? runEnd : runEnd - 1
    }

    /// GPT-2's pattern, matched by hand with the same leftmost-first alternation and backtracking:
    /// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
    static func gpt2Ranges(_ s: [Unicode.Scalar]) -> [Range<Int>] {
        var out: [Range<Int>] = []
        let n = s.count
        var i = 0
        func run(from j: Int, _ pred: (Unicode.Scalar) -> Bool) -> Int { var k = j; while k < n && pred(s[k]) { k += 1 }; return k }
        while i < n {
            let c = s[i]
            if let k = contractionLength(s, at: i, foldCase: false) { out.append(i..<(i + k)); i += k; continue }
            var matched = false
            for pred in [isLetter, isNumber, isOther] as [(Unicode.Scalar) -> Bool] {
                // " ?X+": with the optional space first, then without it.
                if c == " " && i + 1 < n && pred(s[i + 1]) { out.append(i..<run(from: i + 1, pred)) }
                else if pred(c) { out.append(i..<run(from: i, pred)) }
                else { continue }
                i = out.last!.upperBound; matched = true; break
            }
            if matched { continue }
            let e = whitespaceEnd(from: i, runEnd: run(from: i, isSpace), count: n)
            out.append(i..<e); i = e
        }
        return out
    }

    /// Llama 3's pattern (Qwen2's with maxDigits = 1), matched by hand like GPT-2's:
    /// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
    static func llama3Ranges(_ s: [Unicode.Scalar], maxDigits: Int) -> [Range<Int>] {
        var out: [Range<Int>] = []
        let n = s.count
        var i = 0
        func run(from j: Int, _ pred: (Unicode.Scalar) -> Bool) -> Int { var k = j; while k < n && pred(s[k]) { k += 1 }; return k }
        func isNewline(_ u: Unicode.Scalar) -> Bool { u == "\r" || u == "\n" }
        while i < n {
            let c = s[i]
            if let k = contractionLength(s, at: i, foldCase: true) { out.append(i..<(i + k)); i += k; continue }
            // [^\r\n\p{L}\p{N}]?\p{L}+
            if !isNewline(c) && !isLetter(c) && !isNumber(c) && i + 1 < n && isLetter(s[i + 1]) {
                let e = run(from: i + 1, isLetter); out.append(i..<e); i = e; continue
            }
            if isLetter(c) { let e = run(from: i, isLetter); out.append(i..<e); i = e; continue }
            // \p{N}{1,maxDigits}
            if isNumber(c) {
                var e = i; while e < n && e - i < maxDigits && isNumber(s[e]) { e += 1 }
                out.append(i..<e); i = e; continue
            }
            //  ?[^\s\p{L}\p{N}]+[\r\n]*
            if (c == " " && i + 1 < n && isOther(s[i + 1])) || isOther(c) {
                let e = run(from: run(from: c == " " ? i + 1 : i, isOther), isNewline)
                out.append(i..<e); i = e; continue
            }
            // \s*[\r\n]+ : the whitespace run up to and including its last newline
            let end = run(from: i, isSpace)
            if let last = (i..<end).last(where: { isNewline(s[$0]) }) { out.append(i..<(last + 1)); i = last + 1; continue }
            let e = whitespaceEnd(from: i, runEnd: end, count: n)
            out.append(i..<e); i = e
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
