import Foundation

/// Word-level n-gram overlap between training documents and evaluation items (the GPT-3 /
/// lm-evaluation-harness style check): text is NFKC-normalised, lower-cased, combining marks
/// (e.g. Arabic diacritics) dropped and every other non-letter, non-digit character treated as a
/// space; an item is touched when any of its n-grams occurs in a document.
public struct Decontamination {
    public struct Item: Sendable { public let task: String; public let index: Int; public let text: String }
    public struct Hit: Codable, Sendable {
        public let task: String, item: Int, document: String
        public init(task: String, item: Int, document: String) { self.task = task; self.item = item; self.document = document }
    }
    public struct TaskReport: Codable, Sendable {
        public let task: String
        public var items = 0
        /// Items with fewer than `minWords` words: too short for the check to mean anything.
        public var tooShort = 0
        public var touched = 0
        public var touchedItems: [Int] = []
        enum CodingKeys: String, CodingKey { case task, items, tooShort = "too_short", touched, touchedItems = "touched_items" }
    }

    public let n: Int
    public let minWords: Int
    var grams: [UInt64: [Int]] = [:]       // n-gram hash -> item indices
    public private(set) var items: [Item] = []
    var checkable: [Bool] = []
    var gramSizes = Set<Int>()             // n, and the lengths of items shorter than n

    public init(items: [Item], n: Int = 13, minWords: Int = 8) {
        self.n = n; self.minWords = minWords; self.items = items
        for (k, item) in items.enumerated() {
            let w = Decontamination.words(item.text)
            guard w.count >= min(n, minWords) else { checkable.append(false); continue }
            checkable.append(true)
            gramSizes.insert(min(n, w.count))
            for g in Decontamination.ngrams(w, n: min(n, w.count)) { grams[g, default: []].append(k) }
        }
    }

    /// Item indices whose n-grams occur in `text`. Items shorter than n are matched on all their words.
    public func touchedItems(_ text: String) -> Set<Int> {
        let w = Decontamination.words(text)
        var hit = Set<Int>()
        for size in gramSizes where size <= w.count { for g in Decontamination.ngrams(w, n: size) { if let ks = grams[g] { hit.formUnion(ks) } } }
        return hit
    }

    public func reports(hits: [Hit]) -> [TaskReport] {
        var byTask: [String: TaskReport] = [:], order: [String] = []
        for (k, item) in items.enumerated() {
            if byTask[item.task] == nil { byTask[item.task] = TaskReport(task: item.task); order.append(item.task) }
            byTask[item.task]!.items += 1
            if !checkable[k] { byTask[item.task]!.tooShort += 1 }
        }
        for (task, list) in Dictionary(grouping: hits, by: \.task) {
            let touched = Set(list.map(\.item)).sorted()
            byTask[task]!.touched = touched.count
            byTask[task]!.touchedItems = touched
        }
        return order.map { byTask[$0]! }
    }

    public static func words(_ text: String) -> [String] {
        var out: [String] = [], current = String.UnicodeScalarView()
        for u in text.precomposedStringWithCompatibilityMapping.lowercased().unicodeScalars {
            switch u.properties.generalCategory {
            case .nonspacingMark, .enclosingMark, .spacingMark, .format: continue
            case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter, .decimalNumber, .letterNumber, .otherNumber:
                current.append(u)
            default:
                if !current.isEmpty { out.append(String(current)); current = String.UnicodeScalarView() }
            }
        }
        if !current.isEmpty { out.append(String(current)) }
        return out
    }

    static func ngrams(_ w: [String], n: Int) -> [UInt64] {
        guard n > 0, w.count >= n else { return [] }
        let hashes = w.map { word -> UInt64 in
            var h: UInt64 = 0xcbf2_9ce4_8422_2325
            for b in word.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
            return h
        }
        return (0...(w.count - n)).map { i in
            var h: UInt64 = UInt64(n)
            for j in i..<(i + n) { h = (h &* 0x9E37_79B9_7F4A_7C15) ^ hashes[j] }
            return h
        }
    }

    /// Evaluation items from JSONL (or a JSON array) task files: every string value of a record
    /// (query, context, choices, answers) joined into the item's text.
    public static func loadItems(path: String) throws -> [Item] {
        guard let data = FileManager.default.contents(atPath: path) else { throw CorpusError(message: "\(path): cannot read file") }
        let task = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
        func strings(_ v: Any) -> [String] {
            if let s = v as? String { return [s] }
            if let a = v as? [Any] { return a.flatMap(strings) }
            if let d = v as? [String: Any] { return d.keys.sorted().flatMap { strings(d[$0]!) } }
            return []
        }
        var records: [Any] = []
        if let array = try? JSONSerialization.jsonObject(with: data) as? [Any] { records = array } else {
            for (i, line) in String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).enumerated()
            where !line.trimmingCharacters(in: .whitespaces).isEmpty {
                guard let r = try? JSONSerialization.jsonObject(with: Data(line.utf8)) else { throw CorpusError(message: "\(path):\(i + 1): malformed JSON") }
                records.append(r)
            }
        }
        return records.enumerated().map { Item(task: task, index: $0.offset, text: strings($0.element).joined(separator: " ")) }
    }
}
