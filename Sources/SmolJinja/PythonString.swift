/// Python `str` semantics for the template builtins. Python strings are sequences of code points and
/// compare code point by code point; Swift strings are sequences of grapheme clusters and compare by
/// canonical equivalence. The difference shows in chat templates: `"x\r\n".rstrip("\n")` keeps "\r" in
/// Python but sees one "\r\n" Character in Swift, and a combining accent after "</think>" would hide
/// the marker from a Character-based search. So every string operation here works on Unicode scalars.
enum PythonString {
    typealias Scalars = [Unicode.Scalar]

    static func scalars(_ s: String) -> Scalars { Array(s.unicodeScalars) }

    static func string<S: Sequence>(_ scalars: S) -> String where S.Element == Unicode.Scalar {
        var out = String.UnicodeScalarView()
        out.append(contentsOf: scalars)
        return String(out)
    }

    /// Code-point equality (Python `==`), not Swift's canonical equivalence.
    static func equal(_ a: String, _ b: String) -> Bool { a.unicodeScalars.elementsEqual(b.unicodeScalars) }

    static func length(_ s: String) -> Int { s.unicodeScalars.count }

    /// str.isspace's set: Unicode White_Space plus the separators U+001C–U+001F.
    static func isSpace(_ u: Unicode.Scalar) -> Bool { u.properties.isWhitespace || (0x1C...0x1F).contains(u.value) }

    /// The first index at or after `from` where `sub` occurs in `s`.
    static func find(_ s: Scalars, _ sub: Scalars, from: Int = 0) -> Int? {
        guard sub.count <= s.count else { return nil }
        if sub.isEmpty { return from <= s.count ? from : nil }
        var i = from
        while i + sub.count <= s.count {
            if s[i] == sub[0] && s[i..<(i + sub.count)].elementsEqual(sub) { return i }
            i += 1
        }
        return nil
    }

    static func contains(_ s: String, _ sub: String) -> Bool { find(scalars(s), scalars(sub)) != nil }

    static func hasPrefix(_ s: String, _ p: String) -> Bool { s.unicodeScalars.starts(with: p.unicodeScalars) }

    static func hasSuffix(_ s: String, _ p: String) -> Bool {
        let a = scalars(s), b = scalars(p)
        return b.count <= a.count && a[(a.count - b.count)...].elementsEqual(b)
    }

    /// str.strip / lstrip / rstrip: whitespace when `chars` is nil, else any scalar of `chars`.
    static func strip(_ s: String, chars: String?, leading: Bool, trailing: Bool) -> String {
        let set: (Unicode.Scalar) -> Bool
        if let chars { let cs = Set(chars.unicodeScalars); set = { cs.contains($0) } } else { set = isSpace }
        var sub = Substring(s).unicodeScalars
        if leading { while let f = sub.first, set(f) { sub.removeFirst() } }
        if trailing { while let l = sub.last, set(l) { sub.removeLast() } }
        return String(String.UnicodeScalarView(sub))
    }

    /// str.find: the code-point offset, or -1.
    static func index(_ s: String, _ sub: String) -> Int { find(scalars(s), scalars(sub)) ?? -1 }

    /// str.count: non-overlapping occurrences; an empty `sub` counts len(s) + 1.
    static func count(_ s: String, _ sub: String) -> Int {
        let a = scalars(s), b = scalars(sub)
        if b.isEmpty { return a.count + 1 }
        var n = 0, i = 0
        while let j = find(a, b, from: i) { n += 1; i = j + b.count }
        return n
    }

    /// str.replace(old, new, count): `count` < 0 replaces all; an empty `old` inserts `new` around
    /// every code point, as Python does.
    static func replace(_ s: String, _ old: String, _ new: String, count: Int) -> String {
        let a = scalars(s), o = scalars(old), n = scalars(new)
        var out: Scalars = [], i = 0, done = 0
        if o.isEmpty {
            for u in a {
                if count < 0 || done < count { out += n; done += 1 }
                out.append(u)
            }
            if count < 0 || done < count { out += n }
            return string(out)
        }
        while count < 0 || done < count, let j = find(a, o, from: i) {
            out += a[i..<j]; out += n; i = j + o.count; done += 1
        }
        out += a[i...]
        return string(out)
    }

    /// str.split: on the separator exactly, or on runs of whitespace (dropping empty parts) without one.
    static func split(_ s: String, separator: String?, maxSplit: Int) -> [String] {
        let a = scalars(s)
        if let separator, !separator.isEmpty {
            let sep = scalars(separator)
            var parts: [String] = [], i = 0
            while maxSplit < 0 || parts.count < maxSplit, let j = find(a, sep, from: i) {
                parts.append(string(a[i..<j])); i = j + sep.count
            }
            return parts + [string(a[i...])]
        }
        var parts: [String] = [], i = 0
        while i < a.count {
            while i < a.count && isSpace(a[i]) { i += 1 }
            guard i < a.count else { break }
            if maxSplit >= 0 && parts.count >= maxSplit {
                parts.append(string(a[i...]))  // Python keeps the remainder's trailing whitespace
                break
            }
            let start = i
            while i < a.count && !isSpace(a[i]) { i += 1 }
            parts.append(string(a[start..<i]))
        }
        return parts
    }

    /// str.title: a cased letter after an uncased one is upper-cased, the rest lower-cased.
    static func title(_ s: String) -> String {
        var out = "", previousIsCased = false
        for u in s.unicodeScalars {
            let cased = u.properties.isCased
            out += previousIsCased ? String(u).lowercased() : String(u).uppercased()
            previousIsCased = cased
        }
        return out
    }

    /// str.capitalize: the first code point upper-cased, the rest lower-cased.
    static func capitalize(_ s: String) -> String {
        guard let first = s.unicodeScalars.first else { return s }
        return String(first).uppercased() + string(s.unicodeScalars.dropFirst()).lowercased()
    }
}
