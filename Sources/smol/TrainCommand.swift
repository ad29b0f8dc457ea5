import ArgumentParser
import Foundation
import SmolWeights
import SmolEval
import SmolRuns
import SmolTensor
import SmolHub
import SmolData
import SmolModel
import SmolTrainer
import SmolTokenizer
import SmolMPI
import SmolInfra

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a Llama-family model from a YAML config.",
        discussion: """
        Writes DIR/metrics.jsonl (one JSON object per step and eval) and checkpoints under
        DIR/checkpoints/step_NNNNNNNN. A killed run continues exactly with --resume.

        Examples:
          smol train configs/demo.yaml
          smol train configs/tiny.yaml --set optimizer.lr=1e-3 --set training.steps=50 --out runs/lr1e-3
          smol train configs/tiny.yaml --out runs/lr1e-3 --resume
        """)

    @Argument(help: "The run's YAML config (sections: model, optimizer, schedule, data, training).")
    var config: String

    @Option(name: .customLong("set"), help: "Override a config key, e.g. --set training.steps=100 (repeatable).")
    var overrides: [String] = []

    @Flag(help: "Continue from the newest checkpoint in the output directory.")
    var resume = false

    @Flag(help: "Start afresh in an output directory that holds another run (deletes it).")
    var force = false

    @Flag(help: "Resume although the config changed beyond steps, budget, eval, checkpoint and sampling keys.")
    var allowConfigChange = false

    @Option(help: "Output directory (default: runs/<config name>).")
    var out: String?

    @Flag(help: "Print one JSON object per step and a JSON summary instead of text.")
    var json = false

    @Flag(help: "Skip the sampled continuations at the end.")
    var noSamples = false

    @Option(help: "Run store (SQLite) the run is recorded in (default .smol/runs.sqlite, or $SMOL_STORE).")
    var store: String?

    @Flag(help: "Do not record the run in the run store.")
    var noStore = false

    @Option(help: "Tag the run (main, ablation, debug, ...; repeatable).")
    var tag: [String] = []

    func validate() throws {
        if force && resume { throw ValidationError("--force starts afresh and --resume continues: give one") }
    }

    /// What every rank builds before step 1.
    struct Setup {
        let config: TrainConfig
        let name: String, dir: String
        let trainer: Trainer
        let recorder: TrainRecorder?
    }

    func run() throws {
        let comm = try runReportingErrors { Communicator.launchedByMPI ? try Communicator() : nil }
        let world: Collectives = comm ?? SingleProcess()
        StopRequest.install()
        // Setup on every rank; a failure on any of them stops all, reported once by rank 0.
        var setup: Setup?, failure: String?
        do { setup = try makeSetup(world: world, comm: comm) } catch { failure = "\(error)" }
        if world.size > 1 {
            failure = try agree(world, failure) ?? sameEverywhere(world, setup: setup)
            // Every rank is set up: the seed audit, whose verdict every rank reaches alike.
            if failure == nil, let setup { do { try setup.trainer.auditSeeds() } catch { failure = "\(error)" } }
        }
        guard let setup, failure == nil else {
            if world.rank == 0 { FileHandle.standardError.write(Data("error: \(failure ?? "setup failed")\n".utf8)) }
            comm?.finalize()
            throw ExitCode(1)
        }
        do {
            try train(setup, world: world)
        } catch {
            let prefix = world.size > 1 ? "rank \(world.rank): " : ""
            FileHandle.standardError.write(Data("error: \(prefix)\(error)\n".utf8))
            if let comm, world.size > 1 { comm.abort(code: 1) }   // the other ranks may wait in a collective
            throw ExitCode(1)
        }
        comm?.finalize()
        if setup.trainer.stoppedBySignal != 0 { throw ExitCode(128 + setup.trainer.stoppedBySignal) }
    }

    /// Every rank's failure message (or none); the first failure, naming its rank, if any rank failed.
    func agree(_ world: Collectives, _ failure: String?) throws -> String? {
        let all = try world.allGather(Array((failure ?? "").utf8)).map { String(decoding: $0, as: UTF8.self) }
        guard let first = all.firstIndex(where: { !$0.isEmpty }) else { return nil }
        return Set(all).count == 1 ? all[first] : "rank \(first): \(all[first])"
    }

    /// Ranks started with different configs or binaries train different things: compare hashes before step 1.
    func sameEverywhere(_ world: Collectives, setup: Setup?) throws -> String? {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let configHash = setup.map { DataManifest.fnv1a64((try? enc.encode($0.config)) ?? Data()) + " " + $0.dir } ?? ""
        let codeHash = DataManifest.fnv1a64(FileManager.default.contents(atPath: "/proc/self/exe") ?? Data())
        let all = try world.allGather(Array((configHash + "|" + codeHash).utf8)).map { String(decoding: $0, as: UTF8.self).split(separator: "|").map(String.init) }
        for (r, h) in all.enumerated() where h != all[0] {
            let what = h.first != all[0].first ? "config (or --out)" : "smol binary"
            return "rank \(r) was started with a different \(what) than rank 0 (\(h.joined(separator: ", ")) vs \(all[0].joined(separator: ", "))); start every rank with the same"
        }
        return nil
    }

    func makeSetup(world: Collectives, comm: Communicator?) throws -> Setup {
        let cfg = try TrainConfig.load(path: config, overrides: overrides)
        let name = ((config as NSString).lastPathComponent as NSString).deletingPathExtension
        let dir = out ?? "runs/\(name)"
        let live = stderrIsTerminal && !json
        if cfg.training.preflight { try preflight(comm: comm, rank: world.rank, expectedGemm: cfg.training.preflightGemmGflops) }
        let recorder = noStore || world.rank != 0 ? nil : TrainRecorder(store: try RunStore(path: store ?? RunStore.defaultPath),
                                                                        cores: Parallel.threads * world.size) { warning in
            FileHandle.standardError.write(Data((warning + "\n").utf8))
        }
        let trainer = try Trainer(config: cfg, outputDirectory: dir, resume: resume, force: force, allowConfigChange: allowConfigChange,
                                  collectives: world) { event in
            recorder?.handle(event)
            switch event {
            case .info(let s): if !json { print(s) } else { FileHandle.standardError.write(Data((s + "\n").utf8)) }
            case .step(let m):
                if json { printJSON(m); return }
                var line = String(format: "step %5d/%d | loss %.4f | gnorm %.3f | lr %.2e | %.0f tok/s | MFU %.1f%% | ETA %@",
                                  m.step, cfg.training.totalSteps, m.loss, m.gradNorm, m.lr, m.tokensPerSecond,
                                  m.mfu * 100, formatDuration(m.etaSeconds))
                if let p = m.preference { line += Self.preferenceSummary(p) }
                if live { FileHandle.standardError.write(Data("\r\u{1B}[K\(line)".utf8)) } else { print(line) }
            case .eval(let e):
                if json { printJSON(e); return }
                var line = e.preference.map { String(format: "eval  step %5d | held-out pair loss %.4f", e.step, e.valLoss) + Self.preferenceSummary($0) }
                    ?? String(format: "eval  step %5d | val_loss %.4f (ppl %.2f)", e.step, e.valLoss, exp(e.valLoss))
                for (k, v) in (e.tasks ?? [:]).sorted(by: { $0.key < $1.key }) where !k.hasSuffix("_stderr") {
                    line += " | \(k) " + String(format: "%.4f ± %.4f", v, e.tasks?[k + "_stderr"] ?? 0)
                }
                if live { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
                print(line)
            case .checkpoint(let step, let path):
                if json { return }
                if live { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
                print("checkpoint step \(step) -> \(path)")
            case .spike(let sp, let action):
                if json { return }
                if live { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
                print(String(format: "spike step %d | %@ %.4g above %.4g (%@ rule) | %@", sp.step, sp.signal,
                             sp.signal == "grad_norm" ? sp.gradNorm : sp.loss, sp.threshold, sp.rule, action))
            case .rollback(let from, let to, _, let skipped):
                if json { return }
                print("rollback: spike at step \(from) -> restored step \(to), skipped \(skipped) micro-batches of data")
            case .baseline(let c):
                if json || !(c.worse) { return }
                if live { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
                print(String(format: "%@ step %d | %.4f vs baseline %.4f (%+.2f%%), %d in a row", c.alert ? "ALERT" : "behind",
                             c.step, c.value, c.baseline, c.relative * 100, c.streak))
            case .dataReport: return   // the run store keeps it; the info line said it
            }
            fflush(stdout)
        }
        if !cfg.training.evalTasks.isEmpty && world.rank == 0 {
            let tasks = try cfg.training.evalTasks.map { try EvalTask.load(cfg.resolve([$0])[0]) }
            var options = EvalOptions()
            options.limit = cfg.training.evalTasksLimit
            let assets = trainer.assets
            trainer.taskEvaluator = { model in
                let evaluator = Evaluator(model: try PretrainedModel.live(model: model, assets: assets, source: dir), options: options)
                var out: [String: Double] = [:]
                for task in tasks {
                    let (r, _) = try evaluator.run(task)
                    for (m, v) in r.metrics { out["\(r.task)/\(m)"] = v.value; out["\(r.task)/\(m)_stderr"] = v.stderr }
                }
                return out
            }
        }
        if let b = cfg.baseline, let key = b.run, world.rank == 0 {
            guard let store = recorder?.store else { throw CLIError(message: "baseline.run needs the run store (drop --no-store)") }
            let base = try store.find(key)
            let points = try store.series(run: base.id, metric: b.metric)
            guard !points.isEmpty else { throw CLIError(message: "baseline.run: run \(base.id) (\(base.name)) has no '\(b.metric)' values") }
            trainer.baselineCurve = points.map { (Double($0.tokens), $0.value) }
        }
        return Setup(config: cfg, name: name, dir: dir, trainer: trainer, recorder: recorder)
    }

    /// `training.preflight`: the hardware checks of `smol preflight` on every rank, before step 1.
    func preflight(comm: Communicator?, rank: Int, expectedGemm: Double?) throws {
        var options = PreflightOptions()
        options.expectedGemmGflops = expectedGemm
        let checks = try Preflight.run(comm: comm, options: options)
        let failed = checks.filter { !$0.pass }
        guard failed.isEmpty else {
            throw CLIError(message: "preflight FAIL (training.preflight): " + failed.map { "\($0.name) on rank(s) \($0.failingRanks.map(String.init).joined(separator: ","))" }.joined(separator: "; "))
        }
        if rank == 0 && !json { print("preflight PASS (\(checks.count) checks)") }
    }

    func train(_ setup: Setup, world: Collectives) throws {
        let cfg = setup.config, name = setup.name, dir = setup.dir, trainer = setup.trainer, recorder = setup.recorder
        let live = stderrIsTerminal && !json
        let hosts = try world.allGather(Array(RunStore.hostName.utf8)).map { String(decoding: $0, as: UTF8.self) }
        let lineage = recorder == nil ? [] : cfg.data.resolvedSources.flatMap { s in DataLineage.of(source: s.name, shards: (try? cfg.resolve(s.shards)) ?? []) }
        try recorder?.begin(name: name, outputDir: dir, config: cfg, tags: tag, resumedFrom: trainer.resumedFrom,
                            topology: RunStore.Topology(worldSize: world.size, dp: trainer.dataParallel, tp: cfg.parallel.tp,
                                                        zero: cfg.parallel.zero, hosts: Array(Set(hosts)).sorted()),
                            dataLineage: String(decoding: try JSONEncoder().encode(lineage), as: UTF8.self))
        let summary: TrainSummary
        do { summary = try trainer.run() } catch { recorder?.finish(status: "failed"); throw error }
        recorder?.finish(status: trainer.stoppedBySignal != 0 ? "stopped" : "finished")
        if Profiler.enabled { FileHandle.standardError.write(Data("profile of rank \(world.rank) (all steps):\n\(Profiler.report())\n".utf8)) }
        let wantSamples = !noSamples && cfg.training.sampleTokens > 0
        let whole = wantSamples ? try trainer.wholeModel() : nil   // collective under tensor parallelism
        guard world.rank == 0 else { return }
        if live { FileHandle.standardError.write(Data("\n".utf8)) }
        var samples: [[String: String]] = []
        if wantSamples, let whole {
            whole.releaseWorkspace()
            let live = try PretrainedModel.live(model: whole, assets: trainer.assets, source: dir)
            for (i, prompt) in cfg.training.samplePrompts.enumerated() {
                var ids = live.tokenizer.encode(prompt)
                if ids.isEmpty, let eos = live.eosToken.flatMap({ live.tokenizer.id(of: $0) }) { ids = [eos] }
                let generator = Generator(live, contextLength: min(cfg.model.maxPositionEmbeddings, ids.count + cfg.training.sampleTokens))
                var options = GenerationOptions()
                options.temperature = 0.8; options.topK = 40; options.seed = cfg.training.seed &+ UInt64(i)
                options.maxTokens = cfg.training.sampleTokens
                samples.append(["prompt": prompt, "continuation": try generator.generate(promptIds: ids, options: options).text])
            }
        }
        if json {
            struct Out: Encodable { let summary: TrainSummary; let samples: [[String: String]] }
            printJSON(Out(summary: summary, samples: samples))
            return
        }
        if !samples.isEmpty {
            print("\n── samples (temperature 0.8, top-k 40) ──")
            for s in samples { print("» \(s["prompt"]!)\(s["continuation"]!)\n") }
        }
        printSummary(summary, config: cfg, dir: dir)
    }

    /// A preference step's or evaluation's pairs, as trl names them.
    static func preferenceSummary(_ p: [String: Double]) -> String {
        String(format: " | accuracy %.3f | margin %.3f (chosen %.3f, rejected %.3f)", p["rewards/accuracies"] ?? 0,
               p["rewards/margins"] ?? 0, p["rewards/chosen"] ?? 0, p["rewards/rejected"] ?? 0)
    }

    func printSummary(_ s: TrainSummary, config: TrainConfig, dir: String) {
        let vocab = config.model.vocabSize
        print("── summary ──")
        print("parameters      \(formatCount(s.parameters)) (\(s.parameters))")
        print("steps           \(s.steps) (\(formatCount(s.tokens)) tokens)\(s.resumedFrom.map { ", resumed from step \($0)" } ?? "")")
        if let f = s.firstLoss, let l = s.finalLoss {
            print(String(format: "train loss      %.4f → %.4f   (ln(vocab %d) = %.4f)", f, l, vocab, log(Double(vocab))))
        }
        if let v = s.finalValLoss {
            if config.training.objective.preference != nil { print(String(format: "held-out loss   %.4f (mean over pairs)", v)) }
            else { print(String(format: "val loss        %.4f (%.3f bits/token)", v, v / log(2))) }
        }
        print(String(format: "time            %@ at %.0f tokens/s, MFU %.1f%% of %.1f GFLOP/s (%@)",
                     formatDuration(s.seconds), s.tokensPerSecond, s.mfu * 100, s.peakGflops, s.peakSource))
        print("metrics         \(dir)/metrics.jsonl")
        if let c = s.lastCheckpoint { print("checkpoint      \(c)") }
    }
}
