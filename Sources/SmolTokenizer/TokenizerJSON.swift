import Foundation

/// Writes Hugging Face tokenizer.json for a byte-level BPE: what the trainer produces and what
/// `smol export` hands back with a model. Hugging Face `tokenizers` loads it and encodes alike.
public enum TokenizerJSON {
    static func preTokenizerJSON(_ p: PreTokenizer) -> [String: Any] {
        switch p {
        case let .byteLevel(addPrefixSpace, useRegex):
            return ["type": "ByteLevel", "add_prefix_space": addPrefixSpace, "trim_offsets": true, "use_regex": useRegex]
        case let .digits(individual): return ["type": "Digits", "individual_digits": individual]
        case .gpt2Split: return ["type": "Split", "pattern": ["Regex": BPETokenizer.gpt2Pattern], "behavior": "Isolated", "invert": false]
        case let .llama3Split(maxDigits):
            return ["type": "Split", "pattern": ["Regex": maxDigits == 1 ? BPETokenizer.qwen2Pattern : BPETokenizer.llama3Pattern],
                    "behavior": "Isolated", "invert": false]
        case let .sequence(list): return ["type": "Sequence", "pretokenizers": list.map(preTokenizerJSON)]
        }
    }

    static func normalizerJSON(_ n: Normalizer?) -> Any {
        guard let n else { return NSNull() }
        switch n {
        case .nfc: return ["type": "NFC"]
        case .nfd: return ["type": "NFD"]
        case .nfkc: return ["type": "NFKC"]
        case .nfkd: return ["type": "NFKD"]
        case .lowercase: return ["type": "Lowercase"]
        case let .replace(a, b): return ["type": "Replace", "pattern": ["String": a], "content": b]
        case let .prepend(p): return ["type": "Prepend", "prepend": p]
        case let .strip(l, r): return ["type": "Strip", "strip_left": l, "strip_right": r]
        case let .sequence(list): return ["type": "Sequence", "normalizers": list.map { normalizerJSON($0) }]
        }
    }

    /// A TemplateProcessing that reproduces the post-processor's single-sequence template.
    static func postProcessorJSON(_ p: PostProcessor?, name: (Int32) -> String) -> Any {
        guard let p else { return NSNull() }
        var single: [[String: Any]] = [], specials: [String: Any] = [:]
        for piece in p.single {
            switch piece {
            case .text: single.append(["Sequence": ["id": "A", "type_id": 0]])
            case let .special(id):
                let n = name(id)
                single.append(["SpecialToken": ["id": n, "type_id": 0]])
                specials[n] = ["id": n, "ids": [Int(id)], "tokens": [n]]
            }
        }
        let pair = single + single.map { $0["Sequence"] != nil ? ["Sequence": ["id": "B", "type_id": 1]] : $0 }
        return ["type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": specials]
    }

    public static func data(vocab: [String: Int32], merges: [(String, String)], addedTokens: [AddedToken],
                            preTokenizer: PreTokenizer, normalizer: Normalizer? = nil, postProcessor: PostProcessor? = nil,
                            ignoreMerges: Bool = false) throws -> Data {
        var names: [Int32: String] = [:]
        for (t, id) in vocab { names[id] = t }
        for a in addedTokens { names[a.id] = a.content }
        let added: [[String: Any]] = addedTokens.sorted { $0.id < $1.id }.map {
            ["id": Int($0.id), "content": $0.content, "single_word": false, "lstrip": $0.lstrip, "rstrip": $0.rstrip,
             "normalized": false, "special": $0.special]
        }
        let root: [String: Any] = [
            "version": "1.0", "truncation": NSNull(), "padding": NSNull(), "added_tokens": added, "normalizer": normalizerJSON(normalizer),
            "pre_tokenizer": preTokenizerJSON(preTokenizer), "post_processor": postProcessorJSON(postProcessor) { names[$0] ?? "<\($0)>" },
            "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
            "model": ["type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "continuing_subword_prefix": NSNull(),
                      "end_of_word_suffix": NSNull(), "fuse_unk": false, "byte_fallback": false, "ignore_merges": ignoreMerges,
                      "vocab": vocab.mapValues { Int($0) }, "merges": merges.map { [$0.0, $0.1] }] as [String: Any],
        ]
        return try JSONSerialization.data(withJSONObject: root, options: [.sortedKeys])
    }
}

extension BPETokenizer {
    /// The id of a token written as text: an added token, else a vocabulary entry.
    public func id(of token: String) -> Int32? {
        addedTokens.first { $0.content == token }?.id ?? vocab[token]
    }

    /// Merges in rank order, as names.
    public var orderedMerges: [(String, String)] {
        var out: [(rank: Int32, pair: (String, String))] = []
        for (key, m) in merges {
            out.append((m.rank, (idToToken[Int(key >> 32)], idToToken[Int(key & 0xFFFF_FFFF)])))
        }
        return out.sorted { $0.rank < $1.rank }.map(\.pair)
    }

    /// This tokenizer as Hugging Face tokenizer.json.
    public func tokenizerJSON() throws -> Data {
        try TokenizerJSON.data(vocab: vocab, merges: orderedMerges, addedTokens: addedTokens, preTokenizer: preTokenizer,
                               normalizer: normalizer, postProcessor: postProcessor, ignoreMerges: ignoreMerges)
    }

    /// Everything that decides this tokenizer's ids, as canonical bytes, whatever file it came from
    /// (tokenizer.json or GGUF): the tokenizer.json of its settings without vocabulary and merges
    /// (key-sorted), then the vocabulary in id order and the merges in rank order, each string
    /// length-prefixed. Built in milliseconds, where the key-sorted tokenizer.json of a 49k
    /// vocabulary takes Foundation seconds (ICU collation of its keys, Objective-C bridging).
    public func canonicalBytes() throws -> Data {
        var out = try TokenizerJSON.data(vocab: [:], merges: [], addedTokens: addedTokens, preTokenizer: preTokenizer,
                                         normalizer: normalizer, postProcessor: postProcessor, ignoreMerges: ignoreMerges)
        var bytes = [UInt8]()
        func put(_ v: Int) { withUnsafeBytes(of: UInt32(truncatingIfNeeded: v).littleEndian) { bytes.append(contentsOf: $0) } }
        func put(_ s: String) { put(s.utf8.count); bytes.append(contentsOf: s.utf8) }
        put(vocab.count)
        for (token, id) in vocab.sorted(by: { $0.value < $1.value }) { put(Int(id)); put(token) }
        let merges = orderedMerges
        put(merges.count)
        for (a, b) in merges { put(a); put(b) }
        out.append(contentsOf: bytes)
        return out
    }

    /// A byte tokenizer (id = byte value, then special tokens) written as byte-level BPE with no
    /// merges, so Hugging Face tools reproduce the ids of our byte-level checkpoints.
    public static func bytes(specialTokens: [String]) throws -> BPETokenizer {
        var vocab: [String: Int32] = [:]
        for b in 0..<256 { vocab[ByteLevel.encode([UInt8(b)])] = Int32(b) }
        let added = specialTokens.enumerated().map { AddedToken(id: Int32(256 + $0.offset), content: $0.element, special: true, lstrip: false, rstrip: false) }
        for a in added { vocab[a.content] = a.id }
        return try BPETokenizer(vocab: vocab, merges: [], addedTokens: added, preTokenizer: .byteLevel(addPrefixSpace: false, useRegex: false))
    }
}
