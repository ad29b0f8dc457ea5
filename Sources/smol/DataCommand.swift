import ArgumentParser
import Foundation
import SmolData
import SmolTokenizer
import SmolWeights
import SmolHub
import SmolJinja
import SmolMPI
import SmolTensor

enum DataFormat: String, ExpressibleByArgument, CaseIterable { case text, chat, preference }
enum TrainOn: String, ExpressibleByArgument, CaseIterable { case assistant, all }
enum Overflow: String, ExpressibleByArgument, CaseIterable { case truncate, drop }

struct DataCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Prepare training data: tokenise corpora into shards; find evaluation overlap.",
        subcommands: [Prepare.self, Decontaminate.self, Dedup.self])

    struct Prepare: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Tokenise .txt/.jsonl files, directories or globs into token shards with a manifest.",
            discussion: """
            Inputs: .jsonl files (one document per line, from --text-field), .txt files (one document per
            blank-line-separated block; --delimiter TEXT splits at TEXT; --per-file keeps each file whole),
            directories (walked for .txt and .jsonl) and quoted glob patterns. Documents are tokenised on all
            cores; each ends with the end-of-text token (--no-eos to leave it out; --bos to start each with
            the BOS token). --out DIR writes DIR/NAME-00000.bin, … and DIR/NAME.manifest.json; --out X.bin
            writes one shard X.bin and X.manifest.json. Shards are written under a temporary name and renamed
            when complete; a failed run removes what it wrote. Bad records (invalid UTF-8, malformed JSON,
            a missing text field, empty documents) are counted by reason with their first locations;
            --strict makes the first one an error. The shard format is in docs/FORMATS.md.

            --format chat reads JSONL conversations ({"messages": [{"role", "content"}, ...]}, optional
            "tools") for SFT: each is rendered through the chat template of --tokenizer MODEL (a GGUF, Hugging
            Face directory or run; --chat-template FILE replaces it) and stored with a loss mask: assistant
            content and its end-of-turn token ({% generation %} blocks when the template has them), or every
            token with --train-on all. The system-prompt guard checks that every message's content appears in
            the rendered text in order and that every assistant token carries loss; a template that drops or
            replaces system messages stops the prepare (--allow-system-mismatch keeps those conversations as the
            template renders them, counted in the manifest). The manifest reports the share of conversations with a system message, the guard's
            counts, and the packing efficiency at --seq-len (best-fit decreasing); longer conversations are
            truncated or dropped (--overflow).

            --format preference reads JSONL pairs as trl does: "prompt" (a string, one user message, or a
            list of messages) or "messages", with "chosen" and "rejected" (a string, one assistant message, or
            a list of messages). Each pair is rendered twice through the chat template, chosen then rejected,
            with loss on the completion only, for training.objective dpo, apo_zero or apo_down. Pairs whose two
            conversations do not fit together in --seq-len positions are dropped; records missing chosen or
            rejected, prompt-only, or with identical completions are counted by reason with file:line.

            Examples:
              smol data prepare data/corpus/prose.txt --out data/shards/prose.bin
              smol data prepare sft.jsonl --format chat --tokenizer SmolLM2-135M-Instruct.Q4_1.gguf --out data/sft.bin
              smol data prepare pairs.jsonl --format preference --tokenizer SmolLM2-135M-Instruct.Q4_1.gguf --out data/dpo.bin
              smol data prepare 'web/*.jsonl' --tokenizer tokenizer.json --out data/shards --name web --json
            """)

        @Argument(help: "Input files, directories or glob patterns.") var inputs: [String]
        @Option(help: "Output directory, or a single shard path ending in .bin.") var out: String
        @Option(help: "Source name for shard and manifest names (default: the first input's name).") var name: String?
        @Option(help: "tokenizer.json, or a model's (GGUF, Hugging Face directory, run); default: the byte-level tokenizer.") var tokenizer: String?
        @Option(help: "JSONL field holding the document text.") var textField = "text"
        @Flag(help: "One document per .txt file instead of one per blank-line-separated block.") var perFile = false
        @Option(help: "Split .txt documents at this text instead of at blank lines, e.g. '<|endoftext|>'.") var delimiter: String?
        @Option(help: "Documents shorter than this many bytes are rejected.") var minBytes: Int = 1
        @Option(help: "Tokens per shard at most (directory output).") var shardTokens: Int = 50_000_000
        @Flag(help: "Start every document with the BOS token.") var bos = false
        @Flag(help: "Do not end documents with the end-of-text token.") var noEos = false
        @Option(help: "End-of-text token (default: <|endoftext|>, <|end_of_text|> or </s>, whichever exists).") var eosToken: String?
        @Option(help: "BOS token (default: <|begin_of_text|>, <s> or <|im_start|>, whichever exists).") var bosToken: String?
        @Option(help: "Input format: text (documents), chat (JSONL conversations for SFT) or preference (JSONL prompt/chosen/rejected pairs for DPO and APO).") var format: DataFormat = .text
        @Option(help: "Chat: which tokens carry loss: assistant (content and end-of-turn) or all.") var trainOn: TrainOn = .assistant
        @Option(help: "Chat: a Jinja chat template file used instead of the model's.") var chatTemplate: String?
        @Option(help: "Chat: the training sequence length, for packing and overflow.") var seqLen: Int = 2048
        @Option(help: "Chat: conversations over --seq-len + 1 tokens are truncated or dropped.") var overflow: Overflow = .truncate
        @Flag(help: "Chat: go on when the template drops or replaces system messages (kept as rendered, and counted).") var allowSystemMismatch = false
        @Flag(help: "Stop at the first bad record instead of counting it.") var strict = false
        @Flag(help: "Replace shards and manifest of the same name.") var force = false
        @Flag(help: "Continue a killed prepare from its last complete shard (same inputs and options; the output is that of an uninterrupted run).") var resume = false
        @Flag(help: "Print statistics as JSON.") var json = false

        func validate() throws {
            guard shardTokens > 0, minBytes >= 0 else { throw ValidationError("--shard-tokens must be positive and --min-bytes non-negative") }
            guard seqLen > 0 else { throw ValidationError("--seq-len must be positive") }
            if format != .text && tokenizer == nil { throw ValidationError("--format \(format.rawValue) needs --tokenizer MODEL (its chat template and tokenizer)") }
            if format == .text && (chatTemplate != nil || allowSystemMismatch || trainOn != .assistant) {
                throw ValidationError("--chat-template, --train-on and --allow-system-mismatch apply to --format chat or preference")
            }
            if resume && (force || format != .text) { throw ValidationError("--resume continues a --format text prepare, and does not go with --force") }
            if format == .preference && (trainOn != .assistant || overflow != .truncate) {
                throw ValidationError("--format preference puts loss on the completions only, and drops (counts) pairs over --seq-len: --train-on and --overflow do not apply")
            }
        }

        func run() throws {
            // Under mpirun the ranks split the input and rank 0 writes the output; every rank meets
            // the same errors, which rank 0 reports.
            let comm = try runReportingErrors { Communicator.launchedByMPI ? try Communicator() : nil }
            let world: Collectives = comm ?? SingleProcess()
            defer { comm?.finalize() }
            do { try prepare(world: world) } catch {
                if world.rank == 0 { FileHandle.standardError.write(Data("error: \(error)\n".utf8)) }
                throw ExitCode(1)
            }
        }

        func prepare(world: Collectives) throws {
            do {
                let files = try CorpusReader.expand(inputs)
                let single = out.hasSuffix(".bin")
                let sourceName = name ?? ((single ? out : files[0]) as NSString).lastPathComponent.components(separatedBy: ".")[0]
                let prefix = single ? String(out.dropLast(4)) : (out as NSString).appendingPathComponent(sourceName)
                let manifestPath = prefix + ".manifest.json"
                let existing = [manifestPath, prefix + ".bin", prefix + "-00000.bin"].filter { FileManager.default.fileExists(atPath: $0) }
                if !existing.isEmpty && !force { throw CLIError(message: "\(existing[0]): already exists; --force replaces it") }
                let resumePoint = prefix + ".resume.json"
                if FileManager.default.fileExists(atPath: resumePoint) && !resume && !force {
                    throw CLIError(message: "\(resumePoint): a killed prepare left this; --resume continues it, --force starts over")
                }
                if force { unlink(manifestPath); unlink(resumePoint) }   // the old dataset stops claiming to be complete before it is replaced
                // (NSString.deletingLastPathComponent traps on some one-character paths in this Foundation.)
                let dir = prefix.lastIndex(of: "/").map { String(prefix[..<$0]) } ?? ""
                if !dir.isEmpty { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }

                if format != .text {
                    if world.size > 1 { throw CLIError(message: "--format \(format.rawValue) prepares in one process: run it without mpirun") }
                    return try prepareChat(files: files, prefix: prefix, single: single, sourceName: sourceName, manifestPath: manifestPath)
                }
                var prep: DataPreparation, manifest: DataManifest
                if let tokenizer {
                    let t = try loadTokenizer(tokenizer)
                    func find(_ given: String?, _ defaults: [String], _ what: String) throws -> Int32 {
                        if let given { guard let id = t.id(of: given) else { throw CLIError(message: "\(tokenizer): no token '\(given)' for \(what)") }; return id }
                        guard let id = defaults.lazy.compactMap({ t.id(of: $0) }).first else {
                            throw CLIError(message: "\(tokenizer): none of \(defaults.joined(separator: ", ")) exists; name the \(what) token with --\(what)-token")
                        }
                        return id
                    }
                    prep = DataPreparation(vocabSize: t.vocabSize) {
                        var cache = BPETokenizer.WordCache()
                        return { t.encode($0, cache: &cache) }
                    }
                    if !noEos { prep.eos = try find(eosToken, ["<|endoftext|>", "<|end_of_text|>", "</s>"], "eos") }
                    if bos { prep.bos = try find(bosToken, ["<|begin_of_text|>", "<s>", "<|im_start|>"], "bos") }
                    manifest = DataManifest(source: sourceName, inputs: files, tokenizer: tokenizer,
                                            tokenizerHash: try DataManifest.tokenizerHash(of: t), vocabSize: t.vocabSize)
                } else {
                    let t = ByteTokenizer()
                    prep = DataPreparation(vocabSize: t.vocabSize) { { t.encode($0) } }
                    if !noEos { prep.eos = t.endOfText }
                    if bos { throw CLIError(message: "--bos needs a --tokenizer with a BOS token (the byte tokenizer has none)") }
                    manifest = DataManifest(source: sourceName, inputs: files, tokenizer: "byte-level", tokenizerHash: "byte-level", vocabSize: t.vocabSize)
                }
                manifest.lineage = DataManifest.Lineage.of(inputs: files)
                prep.reader.textField = textField
                prep.reader.minBytes = minBytes
                prep.reader.strict = strict
                prep.reader.textSplit = perFile ? .wholeFile : delimiter.map { .delimiter($0) } ?? .blankLines
                prep.shardTokens = shardTokens
                prep.resume = resume
                let start = Date()
                var lastReport = Date.distantPast
                let showProgress = stderrIsTerminal && world.rank == 0
                prep.progress = { docs, bytes, tokens in
                    guard showProgress, Date().timeIntervalSince(lastReport) >= 0.5 else { return }
                    lastReport = Date()
                    let mbps = Double(bytes) / 1e6 / max(Date().timeIntervalSince(start), 1e-9)
                    FileHandle.standardError.write(Data(String(format: "\r  %d documents, %.1f MB, %d tokens, %.1f MB/s   ", docs, Double(bytes) / 1e6, tokens, mbps).utf8))
                }
                let m = try prep.run(files: files, prefix: prefix, single: single, manifest: manifest, world: world)
                if showProgress { FileHandle.standardError.write(Data("\r".utf8)) }
                if world.rank != 0 { return }
                if world.size > 1 && !json { print("\(world.size) ranks split the input; rank 0 wrote the shards") }
                if json { printJSON(m) } else {
                    print(String(format: "%@: %d documents, %d tokens, %d bytes (%.2f bytes/token) in %d shard(s); manifest %@",
                                 sourceName, m.documents, m.tokens, m.bytes, m.bytesPerToken, m.shards.count, manifestPath))
                    for (reason, r) in m.rejected.reasons.sorted(by: { $0.key < $1.key }) {
                        print("  rejected \(r.count) × \(reason) (first at \(r.first.joined(separator: ", ")))")
                    }
                }
            }
        }

        func prepareChat(files: [String], prefix: String, single: Bool, sourceName: String, manifestPath: String) throws {
            let model = try PretrainedModel.loadTokenizerAssets(tokenizer!)
            var template: ChatTemplate
            if let chatTemplate {
                guard let text = try? String(contentsOfFile: chatTemplate, encoding: .utf8) else { throw CLIError(message: "\(chatTemplate): cannot read template") }
                do { template = try ChatTemplate(text, bosToken: model.bosToken, eosToken: model.eosToken) } catch { throw CLIError(message: "\(chatTemplate): \(error)") }
            } else {
                guard let source = model.chatTemplate else { throw CLIError(message: "\(tokenizer!): the model has no chat template; give one with --chat-template") }
                do { template = try ChatTemplate(source, bosToken: model.bosToken, eosToken: model.eosToken) } catch { throw CLIError(message: "\(tokenizer!): \(error)") }
            }
            var prep = ChatPreparation(masker: ChatMasker(template: template, tokenizer: model.tokenizer, trainOnAll: trainOn == .all))
            prep.seqLen = seqLen; prep.dropOverflow = overflow == .drop; prep.strict = strict
            prep.allowSystemMismatch = allowSystemMismatch; prep.shardTokens = shardTokens
            prep.preference = format == .preference
            let manifest = DataManifest(source: sourceName, inputs: files, tokenizer: tokenizer!,
                                        tokenizerHash: try DataManifest.tokenizerHash(of: model.tokenizer), vocabSize: model.tokenizer.vocabSize)
            let m = try prep.run(files: files, prefix: prefix, single: single, manifest: manifest)
            if json { return printJSON(m) }
            let c = m.chat!
            if let pairs = c.pairs {
                print(String(format: "%@: %d preference pairs (%.1f%% with a system message), %d tokens, %d carrying loss, in %d shard(s); manifest %@",
                             sourceName, pairs, c.systemShare * 100, c.tokens, c.lossTokens, m.shards.count, manifestPath))
                print(String(format: "  one pair per row of seq_len %d: %.1f%% filled; %d pair(s) over it dropped", c.packing.seqLen,
                             c.packing.efficiency * 100, c.packing.dropped))
            } else {
                print(String(format: "%@: %d conversations (%.1f%% with a system message), %d tokens, %d carrying loss, in %d shard(s); manifest %@",
                             sourceName, c.conversations, c.systemShare * 100, c.tokens, c.lossTokens, m.shards.count, manifestPath))
                print(String(format: "  packing at seq_len %d: %d rows, %.1f%% filled; %d truncated, %d dropped", c.packing.seqLen, c.packing.sequences,
                             c.packing.efficiency * 100, c.packing.truncated, c.packing.dropped))
            }
            if let d = c.defaultSystemPrompt, c.defaultSystemInjected.total > 0 {
                print("  the template injected its default system prompt into \(c.defaultSystemInjected.total) conversation(s) without one: \"\(d.prefix(100))\"")
            }
            for (reason, r) in c.guardFailures.reasons.sorted(by: { $0.key < $1.key }) {
                print("  guard: \(r.count) × \(reason) (first at \(r.first.joined(separator: "; ")))")
            }
            for (reason, r) in m.rejected.reasons.sorted(by: { $0.key < $1.key }) {
                print("  rejected \(r.count) × \(reason) (first at \(r.first.joined(separator: ", ")))")
            }
        }
    }
}
