import SmolFormats

extension BPETokenizer {
    /// The byte-level BPE tokenizer stored in a GGUF file (tokenizer.ggml.model = gpt2): tokens,
    /// merges, token types (control and user-defined tokens become added tokens) and the
    /// pre-tokenizer named by tokenizer.ggml.pre.
    public convenience init(gguf: GGUFFile) throws {
        let m = gguf.metadata, path = gguf.path
        func fail(_ r: String) -> TokenizerError { .invalid(path: path, reason: r) }
        guard let model = m["tokenizer.ggml.model"]?.string else { throw fail("no tokenizer.ggml.model") }
        guard model == "gpt2" else { throw fail("tokenizer.ggml.model '\(model)' is not byte-level BPE (gpt2)") }
        guard let tokens = m["tokenizer.ggml.tokens"]?.array?.compactMap(\.string), !tokens.isEmpty else { throw fail("no tokenizer.ggml.tokens") }
        let types = m["tokenizer.ggml.token_type"]?.array?.compactMap(\.int) ?? []
        var vocab: [String: Int32] = [:]
        var added: [AddedToken] = []
        for (i, t) in tokens.enumerated() {
            let type = i < types.count ? types[i] : 1
            if type == 3 || type == 4 {   // control, user-defined
                added.append(AddedToken(id: Int32(i), content: t, special: type == 3, lstrip: false, rstrip: false))
            }
            if vocab[t] == nil { vocab[t] = Int32(i) }
        }
        var merges: [(String, String)] = []
        for (i, v) in (m["tokenizer.ggml.merges"]?.array ?? []).enumerated() {
            guard let s = v.string, let sp = s.firstIndex(of: " ") else { throw fail("merge \(i) is not \"a b\"") }
            merges.append((String(s[..<sp]), String(s[s.index(after: sp)...])))
        }
        let pre = m["tokenizer.ggml.pre"]?.string ?? "gpt2"
        let preTokenizer: PreTokenizer
        switch pre {
        case "smollm": preTokenizer = .sequence([.digits(individual: true), .byteLevel(addPrefixSpace: false, useRegex: true)])
        case "gpt2", "gpt-2", "default": preTokenizer = .byteLevel(addPrefixSpace: false, useRegex: true)
        case "llama-bpe", "llama3": preTokenizer = .sequence([.llama3Split(maxDigits: 3), .byteLevel(addPrefixSpace: false, useRegex: false)])
        case "qwen2": preTokenizer = .sequence([.llama3Split(maxDigits: 1), .byteLevel(addPrefixSpace: false, useRegex: false)])
        default: throw fail("tokenizer.ggml.pre '\(pre)' is not supported (supported: smollm, gpt2, llama-bpe, qwen2)")
        }
        // llama.cpp prepends BOS when tokenizer.ggml.add_bos_token is true (Llama 3 sets it).
        var post: PostProcessor?
        if m["tokenizer.ggml.add_bos_token"]?.bool == true, let bos = m["tokenizer.ggml.bos_token_id"]?.int {
            post = PostProcessor(single: [.special(Int32(bos)), .text])
        }
        try self.init(vocab: vocab, merges: merges, addedTokens: added, preTokenizer: preTokenizer, postProcessor: post, source: path)
    }
}

extension BPETokenizer {
    /// The `tokenizer.ggml.pre` name llama.cpp knows for this pre-tokenizer.
    func ggufPreName() throws -> String {
        switch preTokenizer {
        case .sequence(let l) where l.count == 2:
            if case .digits(true) = l[0], case .byteLevel(_, true) = l[1] { return "smollm" }
            if case .llama3Split(3) = l[0], case .byteLevel(_, false) = l[1] { return "llama-bpe" }
            if case .llama3Split(1) = l[0], case .byteLevel(_, false) = l[1] { return "qwen2" }
            if case .gpt2Split = l[0], case .byteLevel(_, false) = l[1] { return "gpt-2" }
        case .byteLevel: return "gpt-2"
        default: break
        }
        throw TokenizerError.invalid(path: "tokenizer", reason: "this pre-tokenizer has no llama.cpp equivalent (GGUF supports smollm, gpt-2, llama-bpe, qwen2)")
    }

    /// The tokenizer as GGUF metadata (the inverse of `init(gguf:)`): byte-level BPE ("gpt2") with its
    /// tokens, token types (control for special added tokens, user-defined for other added ones),
    /// merges in rank order, and the BOS / EOS ids.
    public func ggufMetadata(bosToken: String?, eosToken: String?) throws -> [(String, GGUFWriter.Value)] {
        if normalizer != nil { throw TokenizerError.invalid(path: "tokenizer", reason: "a tokenizer with a normaliser cannot be written as GGUF") }
        var types = [Int32](repeating: 1, count: vocabSize)
        for t in addedTokens where Int(t.id) < vocabSize { types[Int(t.id)] = t.special ? 3 : 4 }
        var out: [(String, GGUFWriter.Value)] = [
            ("tokenizer.ggml.model", .string("gpt2")), ("tokenizer.ggml.pre", .string(try ggufPreName())),
            ("tokenizer.ggml.tokens", .strings(idToToken)), ("tokenizer.ggml.token_type", .i32s(types)),
            ("tokenizer.ggml.merges", .strings(orderedMerges.map { $0.0 + " " + $0.1 })),
        ]
        if let b = bosToken, let id = id(of: b) { out.append(("tokenizer.ggml.bos_token_id", .u32(UInt32(id)))) }
        if let e = eosToken, let id = id(of: e) { out.append(("tokenizer.ggml.eos_token_id", .u32(UInt32(id)))) }
        let addsBOS = postProcessor?.single.first.map { if case .special = $0 { return true } else { return false } } ?? false
        out.append(("tokenizer.ggml.add_bos_token", .bool(addsBOS)))
        return out
    }
}
