import Foundation

/// Normalisation before quasi-exact match, token F1 and majority voting: Unicode NFKC, lower case,
/// the Arabic folding of ../shared/reference/evaluation.md when enabled, punctuation (Unicode
/// category P, which holds the Arabic comma and question mark) and the English articles removed,
/// whitespace collapsed.
public struct AnswerNormalizer: Sendable {
    public var arabic: ArabicNormalization
    public init(arabic: ArabicNormalization = ArabicNormalization()) { self.arabic = arabic }

    public func normalize(_ text: String) -> String {
        var s = text.precomposedStringWithCompatibilityMapping.lowercased()
        if arabic.enabled { s = AnswerNormalizer.foldArabic(s, taMarbuta: arabic.foldTaMarbuta, alefMaqsura: arabic.foldAlefMaqsura) }
        var scalars = String.UnicodeScalarView()
        for u in s.unicodeScalars {
            switch u.properties.generalCategory {
            case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
                 .initialPunctuation, .finalPunctuation, .otherPunctuation:
                scalars.append(" ")
            default: scalars.append(u)
            }
        }
        let words = String(scalars).split(whereSeparator: { $0.isWhitespace }).filter { !["a", "an", "the"].contains($0) }
        return words.joined(separator: " ")
    }

    /// Tashkeel (U+064B–U+0652, U+0670) and tatweel (U+0640) removed; alef forms (U+0622, U+0623,
    /// U+0625, U+0671) → U+0627; optionally ta marbuta U+0629 → U+0647, alef maqsura U+0649 → U+064A.
    public static func foldArabic(_ text: String, taMarbuta: Bool, alefMaqsura: Bool) -> String {
        var out = String.UnicodeScalarView()
        for u in text.unicodeScalars {
            switch u.value {
            case 0x064B...0x0652, 0x0670, 0x0640: continue
            case 0x0622, 0x0623, 0x0625, 0x0671: out.append(Unicode.Scalar(0x0627)!)
            case 0x0629 where taMarbuta: out.append(Unicode.Scalar(0x0647)!)
            case 0x0649 where alefMaqsura: out.append(Unicode.Scalar(0x064A)!)
            default: out.append(u)
            }
        }
        return String(out)
    }

    /// Token F1 (SQuAD): overlap of the normalised words of prediction and reference, as a multiset.
    public func f1(prediction: String, reference: String) -> Double {
        let p = normalize(prediction).split(separator: " "), r = normalize(reference).split(separator: " ")
        if p.isEmpty || r.isEmpty { return p.isEmpty && r.isEmpty ? 1 : 0 }
        var counts: [Substring: Int] = [:]
        for w in r { counts[w, default: 0] += 1 }
        var common = 0
        for w in p where (counts[w] ?? 0) > 0 { counts[w]! -= 1; common += 1 }
        if common == 0 { return 0 }
        let precision = Double(common) / Double(p.count), recall = Double(common) / Double(r.count)
        return 2 * precision * recall / (precision + recall)
    }
}
