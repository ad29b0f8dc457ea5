import Foundation
import SmolJinja
import SmolTensor
import SmolTokenizer

/// What a chat manifest says about its conversations (the `chat` key of NAME.manifest.json).
public struct ChatDataReport: Codable, Sendable {
    public struct Packing: Codable, Sendable {
        public var seqLen: Int
        /// "truncate" or "drop": what happened to conversations over seq_len + 1 tokens.
        public var overflow: String
        public var truncated = 0, dropped = 0
        /// Rows of seq_len the conversations pack into (best-fit decreasing), and the share of their
        /// positions the conversations fill.
        public var sequences = 0
        public var efficiency = 0.0
        enum CodingKeys: String, CodingKey { case seqLen = "seq_len", overflow, truncated, dropped, sequences, efficiency }
    }
    /// FNV-1a 64 of the chat template's source: training refuses data rendered through another template.
    public var templateHash: String
    /// "assistant" (content and end-of-turn carry loss) or "all".
    public var trainOn: String
    public var conversations = 0
    /// Preference data: the pairs (each two conversations, chosen then rejected); nil for SFT data.
    public var pairs: Int?
    /// Conversations with a system message, and their share (the playbook's stripped-system bug
    /// shows here before any training).
    public var withSystem = 0
    public var systemShare: Double { conversations > 0 ? Double(withSystem) / Double(conversations) : 0 }
    public var messagesByRole: [String: Int] = [:]
    public var tokens = 0, lossTokens = 0
    /// Conversations that failed the system-prompt guard, by reason, with the first examples
    /// (file:line and what was wrong). They are not in the shards.
    public var guardFailures = Rejections()
    /// Guard failures of a system message kept anyway (`--allow-system-mismatch`).
    public var systemMismatchAllowed = false
    /// Conversations without a system message into which the template put its own default.
    public var defaultSystemInjected = Rejections()
    public var defaultSystemPrompt: String?
    public var packing: Packing

    enum CodingKeys: String, CodingKey {
        case templateHash = "template_hash", trainOn = "train_on", conversations, pairs, withSystem = "with_system", systemShare = "system_share"
        case messagesByRole = "messages_by_role", tokens, lossTokens = "loss_tokens", guardFailures = "guard_failures"
        case systemMismatchAllowed = "system_mismatch_allowed", defaultSystemInjected = "default_system_injected"
        case defaultSystemPrompt = "default_system_prompt", packing
    }
    public init(templateHash: String, trainOn: String, packing: Packing) {
        self.templateHash = templateHash; self.trainOn = trainOn; self.packing = packing
    }
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        templateHash = try c.decode(String.self, forKey: .templateHash); trainOn = try c.decode(String.self, forKey: .trainOn)
        conversations = try c.decode(Int.self, forKey: .conversations); pairs = try c.decodeIfPresent(Int.self, forKey: .pairs)
        withSystem = try c.decode(Int.self, forKey: .withSystem)
        messagesByRole = try c.decode([String: Int].self, forKey: .messagesByRole)
        tokens = try c.decode(Int.self, forKey: .tokens); lossTokens = try c.decode(Int.self, forKey: .lossTokens)
        guardFailures = try c.decode(Rejections.self, forKey: .guardFailures)
        systemMismatchAllowed = try c.decodeIfPresent(Bool.self, forKey: .systemMismatchAllowed) ?? false
        defaultSystemInjected = try c.decode(Rejections.self, forKey: .defaultSystemInjected)
        defaultSystemPrompt = try c.decodeIfPresent(String.self, forKey: .defaultSystemPrompt)
        packing = try c.decode(Packing.self, forKey: .packing)
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(templateHash, forKey: .templateHash); try c.encode(trainOn, forKey: .trainOn)
        try c.encode(conversations, forKey: .conversations); try c.encodeIfPresent(pairs, forKey: .pairs)
        try c.encode(withSystem, forKey: .withSystem)
        try c.encode((systemShare * 10_000).rounded() / 10_000, forKey: .systemShare)
        try c.encode(messagesByRole, forKey: .messagesByRole); try c.encode(tokens, forKey: .tokens); try c.encode(lossTokens, forKey: .lossTokens)
        try c.encode(guardFailures, forKey: .guardFailures); try c.encode(systemMismatchAllowed, forKey: .systemMismatchAllowed)
        try c.encode(defaultSystemInjected, forKey: .defaultSystemInjected); try c.encodeIfPresent(defaultSystemPrompt, forKey: .defaultSystemPrompt)
        try c.encode(packing, forKey: .packing)
    }

    public static func templateHash(_ source: String) -> String { DataManifest.fnv1a64(Data(source.utf8)) }
}

/// `smol data prepare --format chat`: JSONL conversations ({"messages": [{"role", "content"}, …]},
/// optional "tools" and other template variables) rendered through the model's chat template,
/// tokenised with loss masks (`ChatMasker`), checked by the system-prompt guard, and written as
/// version 2 shards. Bad records and guard failures are counted by reason with file:line; `strict`
/// makes the first an error. A guard failure of a system message (dropped or replaced by the
/// template) stops the prepare unless `allowSystemMismatch`: that is the bug that cost SmolLM3's
/// first SFT its system prompts.
public struct ChatPreparation {
    public let masker: ChatMasker
    public var seqLen = 2048
    public var dropOverflow = false
    public var strict = false
    public var allowSystemMismatch = false
    /// Records are preference pairs (`prompt` or `messages`, `chosen`, `rejected`): each is written
    /// as two documents, chosen then rejected, with loss only on the completion.
    public var preference = false
    public var shardTokens = 50_000_000
    public var progress: (_ conversations: Int, _ tokens: Int) -> Void = { _, _ in }

    public init(masker: ChatMasker) { self.masker = masker }

    /// One JSONL record: a conversation (SFT), or a preference pair's two conversations, chosen
    /// then rejected, whose completions start at message `completionFrom`.
    struct Record { let conversations: [[JinjaValue]]; let completionFrom: Int?; let extra: JinjaObject; let location: String }
    enum Outcome { case rejected(String, String), masked(MaskedConversation), failed(String, String) }

    /// Why a message list is bad, nil when every message has a role and string content (or tool calls).
    static func badMessage(_ messages: [JinjaValue]) -> String? {
        for m in messages {
            guard case let .object(mo) = m else { return "message_not_an_object" }
            guard case .string? = mo["role"] else { return "missing_role" }
            switch mo["content"] {
            case .string?: break
            case nil, .none?: if mo["tool_calls"] == nil { return "missing_content" }
            default: return "non_string_content"
            }
        }
        return nil
    }

    /// Parses one JSONL line into a conversation, or the reason it is bad.
    static func parse(_ line: Substring, location: String) -> Result<Record, CorpusError> {
        func bad(_ reason: String) -> Result<Record, CorpusError> { .failure(CorpusError(message: reason)) }
        guard let value = try? JinjaJSON.parse(String(line)) else { return bad("invalid_json") }
        guard case let .object(o) = value else { return bad("not_an_object") }
        guard case let .array(messages)? = o["messages"] else { return bad("no_messages") }
        if messages.isEmpty { return bad("empty_conversation") }
        if let reason = badMessage(messages) { return bad(reason) }
        var extra = JinjaObject()
        for (k, x) in o.pairs where k != "messages" { extra[k] = x }
        return .success(Record(conversations: [messages], completionFrom: nil, extra: extra, location: location))
    }

    /// Parses one preference record as trl's DPOTrainer reads them: `prompt` (a string: one user
    /// message; or a list of messages) or `messages`, and `chosen` and `rejected` (a string: one
    /// assistant message; or a list of messages).
    static func parsePreference(_ line: Substring, location: String) -> Result<Record, CorpusError> {
        func bad(_ reason: String) -> Result<Record, CorpusError> { .failure(CorpusError(message: reason)) }
        guard let value = try? JinjaJSON.parse(String(line)) else { return bad("invalid_json") }
        guard case let .object(o) = value else { return bad("not_an_object") }
        func messages(_ v: JinjaValue?, role: String) -> [JinjaValue]?? {
            switch v {
            case nil, .none?: return .some(nil)
            case let .string(s)?: return [ChatMasker.message(role, s)]
            case let .array(a)?: return a
            default: return nil
            }
        }
        guard let prompt = messages(o["prompt"] ?? o["messages"], role: "user") else { return bad("bad_prompt") }
        guard let chosen = messages(o["chosen"], role: "assistant"), let rejected = messages(o["rejected"], role: "assistant") else {
            return bad("non_string_completion")
        }
        guard let prompt, !prompt.isEmpty else { return bad("no_prompt") }
        switch (chosen, rejected) {
        case (nil, nil): return bad("prompt_only")
        case (nil, _): return bad("missing_chosen")
        case (_, nil): return bad("missing_rejected")
        case let (c?, r?):
            if c.isEmpty || r.isEmpty || (c + r).contains(where: { (ChatMasker.field($0, "content") ?? "x").isEmpty }) { return bad("empty_completion") }
            if c == r { return bad("identical_chosen_rejected") }
            if let reason = badMessage(prompt + c + r) { return bad(reason) }
            var extra = JinjaObject()
            for (k, x) in o.pairs where !["prompt", "messages", "chosen", "rejected"].contains(k) { extra[k] = x }
            return .success(Record(conversations: [prompt + c, prompt + r], completionFrom: prompt.count, extra: extra, location: location))
        }
    }

    /// Writes `prefix`-00000.bin, … (or `prefix`.bin) and `prefix`.manifest.json; returns the manifest.
    public func run(files: [String], prefix: String, single: Bool, manifest: DataManifest) throws -> DataManifest {
        var m = manifest
        m.format = "smol-shards/2"
        var report = ChatDataReport(templateHash: ChatDataReport.templateHash(masker.template.source), trainOn: masker.trainOnAll ? "all" : "assistant",
                                    packing: .init(seqLen: seqLen, overflow: dropOverflow ? "drop" : "truncate"))
        report.defaultSystemPrompt = masker.defaultSystemPrompt
        let writer = ShardSetWriter(prefix: prefix, single: single, shardTokens: shardTokens, vocabSize: masker.tokenizer.vocabSize)
        var lengths: [Int] = []
        let threads = max(1, Parallel.threads)
        var caches = [BPETokenizer.WordCache](repeating: [:], count: threads)
        var pending: [Record] = []

        func process() throws {
            guard !pending.isEmpty else { return }
            var outcomes = [[Outcome]](repeating: [], count: pending.count)
            let records = pending, masker = self.masker
            outcomes.withUnsafeMutableBufferPointer { out in
                caches.withUnsafeMutableBufferPointer { cache in
                    Parallel.chunks(records.count) { worker, range in
                        for i in range {
                            out[i] = records[i].conversations.map { messages in
                                do {
                                    var c = try masker.mask(messages: messages, extra: records[i].extra, cache: &cache[worker % cache.count])
                                    if let k = records[i].completionFrom { c.keepLoss(fromMessage: k) }
                                    return .masked(c)
                                } catch let e as ChatMaskingError {
                                    return .failed("tokenizer", e.message)
                                } catch {
                                    return .rejected("template_error", "\(error)")
                                }
                            }
                        }
                    }
                }
            }
            record: for (record, outcome) in zip(records, outcomes) {
                var conversations: [MaskedConversation] = []
                for o in outcome {
                    switch o {
                    case let .failed(_, message): throw CorpusError(message: "\(record.location): \(message)")
                    case let .rejected(reason, detail):
                        if strict { throw CorpusError(message: "\(record.location): \(reason): \(detail)") }
                        m.rejected.add(reason, at: "\(record.location) (\(detail.prefix(120)))")
                        continue record
                    case let .masked(c):
                        if let (reason, detail) = c.failures.first {
                            if strict { throw CorpusError(message: "\(record.location): system-prompt guard: \(reason.rawValue): \(detail)") }
                            report.guardFailures.add(reason.rawValue, at: "\(record.location) (\(detail))")
                            if !(reason.isSystem && allowSystemMismatch && c.failures.allSatisfy({ $0.0.isSystem })) { continue record }
                            report.systemMismatchAllowed = true
                        }
                        conversations.append(c)
                    }
                }
                if record.completionFrom != nil {
                    // A pair shares one row: chosen, then rejected.
                    let positions = conversations.reduce(0) { $0 + $1.ids.count - 1 }
                    if positions > seqLen {
                        if strict { throw CorpusError(message: "\(record.location): the pair fills \(positions) positions, over --seq-len \(seqLen)") }
                        m.rejected.add("pair_over_seq_len", at: "\(record.location) (\(positions) positions)")
                        report.packing.dropped += 1
                        continue
                    }
                    if conversations.contains(where: { $0.lossTokenCount == 0 }) { m.rejected.add("no_loss_tokens", at: record.location); continue }
                    if conversations[0].ids == conversations[1].ids { m.rejected.add("identical_chosen_rejected", at: record.location); continue }
                    lengths.append(positions)
                    report.pairs = (report.pairs ?? 0) + 1
                } else {
                    var c = conversations[0]
                    if c.ids.count > seqLen + 1 {
                        if dropOverflow { report.packing.dropped += 1; continue }
                        report.packing.truncated += 1
                        c.ids.removeLast(c.ids.count - seqLen - 1); c.mask.removeLast(c.mask.count - seqLen - 1)
                    }
                    if c.lossTokenCount == 0 || c.ids.count < 2 { m.rejected.add("no_loss_tokens", at: record.location); continue }
                    conversations[0] = c
                    lengths.append(c.ids.count - 1)
                }
                for c in conversations {
                    if c.defaultSystemInjected { report.defaultSystemInjected.add("default_system_injected", at: record.location) }
                    try writer.add(c.ids, lossMask: c.mask)
                    report.conversations += 1
                    report.tokens += c.ids.count; report.lossTokens += c.lossTokenCount
                    m.documents += 1; m.tokens += c.ids.count; m.bytes += c.text.utf8.count
                }
                let roles = record.conversations[0].map { ChatMasker.field($0, "role") ?? "?" }
                if roles.contains("system") { report.withSystem += conversations.count }
                for r in record.conversations.flatMap({ $0 }) { report.messagesByRole[ChatMasker.field(r, "role") ?? "?", default: 0] += 1 }
            }
            pending.removeAll(keepingCapacity: true)
            progress(m.documents, m.tokens)
        }

        return try writer.write {
            for file in files {
                var lineNumber = 0
                try CorpusReader.records(try CorpusInputStream(path: file), delimiter: [0x0A]) { raw in
                    lineNumber += 1
                    let location = "\(file):\(lineNumber)"
                    if raw.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { return }
                    guard let text = String(validating: raw.last == 0x0D ? raw.dropLast() : raw, as: UTF8.self) else {
                        if strict { throw CorpusError(message: "\(location): invalid UTF-8") }
                        m.rejected.add("invalid_utf8", at: location); return
                    }
                    let line = text[...]
                    switch preference ? ChatPreparation.parsePreference(line, location: location) : ChatPreparation.parse(line, location: location) {
                    case let .failure(e):
                        if strict { throw CorpusError(message: "\(location): \(e.message)") }
                        m.rejected.add(e.message, at: location)
                    case let .success(r):
                        pending.append(r)
                        if pending.count >= 256 * threads { try process() }
                    }
                }
            }
            try process()
            let systemFailures = report.guardFailures.reasons.filter { ChatGuardFailure(rawValue: $0.key)?.isSystem == true }
            if !systemFailures.isEmpty && !allowSystemMismatch {
                let (reason, r) = systemFailures.sorted { $0.key < $1.key }[0]
                throw CorpusError(message: "system-prompt guard: \(r.count) conversation(s) lose their system message through the chat template (\(reason), first at \(r.first.joined(separator: "; "))); the model would learn to ignore system prompts. Fix the template, or pass --allow-system-mismatch to keep them as the template renders them")
            }
            if m.documents == 0 { throw CorpusError(message: "no \(preference ? "pair" : "conversation") left to write (\(m.rejected.total) bad record(s), \(report.guardFailures.total) guard failure(s))") }
            if preference {
                // One pair per row, no packing.
                report.packing.sequences = lengths.count
                report.packing.efficiency = (Double(lengths.reduce(0, +)) / Double(lengths.count * seqLen) * 10_000).rounded() / 10_000
            } else if !lengths.isEmpty {
                let bins = bestFitDecreasing(lengths: lengths, capacity: seqLen)
                report.packing.sequences = bins.count
                report.packing.efficiency = (Double(lengths.reduce(0, +)) / Double(bins.count * seqLen) * 10_000).rounded() / 10_000
            }
            m.chat = report
            return m
        }
    }
}
