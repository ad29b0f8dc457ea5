import Foundation
import SmolTrainer

/// Writes a training run into the store as it goes: the run when it starts, every step's loss,
/// grad norm, LR, throughput and MFU, held-out losses and task metrics at eval points, checkpoint
/// events, and the outcome with the compute it spent. A store that fails mid-run costs a warning,
/// never the training.
public final class TrainRecorder {
    public let store: RunStore
    public private(set) var runID: Int64?
    private var tokens = 0, warned = false
    private let started = Date()
    public let cores: Int
    private let warn: (String) -> Void

    public init(store: RunStore, cores: Int, warn: @escaping (String) -> Void) {
        self.store = store; self.cores = cores; self.warn = warn
    }

    public func begin(name: String, outputDir: String, config: TrainConfig, tags: [String], resumedFrom: Int?,
                      topology: RunStore.Topology = RunStore.Topology(), dataLineage: String = "[]") throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        let json = String(decoding: try enc.encode(config), as: UTF8.self)
        let run = RunStore.NewRun(name: name, outputDir: outputDir, config: json, tags: tags, parameters: config.model.parameterCount,
                                  flopsPerToken: config.model.modelFlopsPerToken(sequenceLength: config.training.seqLen), cores: cores,
                                  baseline: config.baseline?.run ?? config.baseline?.curve, topology: topology, dataLineage: dataLineage)
        runID = try store.begin(run, resumeFromStep: resumedFrom)
        if !tags.isEmpty, let id = runID { try store.addTags(run: id, tags) }
    }

    private func guarded(_ body: (Int64) throws -> Void) {
        guard let id = runID else { return }
        do { try body(id) } catch {
            if !warned { warned = true; warn("warning: run store \(store.path): \(error) (training goes on)") }
        }
    }

    public func handle(_ event: TrainEvent) {
        switch event {
        case .info: return
        case .step(let m):
            tokens = m.tokens
            guarded { try store.record(run: $0, step: m.step, tokens: m.tokens,
                                       metrics: [("loss", m.loss), ("grad_norm", m.gradNorm), ("lr", m.lr),
                                                 ("tokens_per_s", m.tokensPerSecond), ("mfu", m.mfu)]) }
        case .eval(let e):
            guarded { id in
                try store.record(run: id, step: e.step, tokens: e.tokens,
                                 metrics: [("val_loss", e.valLoss)] + (e.sourceValLoss ?? [:]).sorted { $0.key < $1.key }.map { ("val_loss/\($0.key)", $0.value) })
                for (key, v) in (e.tasks ?? [:]).sorted(by: { $0.key < $1.key }) where !key.hasSuffix("_stderr") {
                    guard let slash = key.firstIndex(of: "/") else { continue }
                    try store.recordEval(run: id, step: e.step, tokens: e.tokens, task: String(key[..<slash]),
                                         metric: String(key[key.index(after: slash)...]), value: v, stderr: e.tasks?[key + "_stderr"])
                }
            }
        case .dataReport(let kind, let message):
            guarded { try store.recordEvent(run: $0, step: 0, tokens: 0, kind: kind, message: message) }
        case .checkpoint(let step, let path):
            guarded { try store.recordEvent(run: $0, step: step, tokens: tokens, kind: "checkpoint", message: path) }
        case .spike(let s, let action):
            guarded { try store.recordEvent(run: $0, step: s.step, tokens: tokens, kind: "spike",
                                            message: String(format: "%@ (%@ rule): loss %.4g, grad norm %.4g, threshold %.4g; %@",
                                                            s.signal, s.rule, s.loss, s.gradNorm, s.threshold, action)) }
        case .rollback(let from, let to, let t, let skipped):
            guarded { id in
                try store.truncate(run: id, afterStep: to)
                try store.recordEvent(run: id, step: from, tokens: t, kind: "rollback",
                                      message: "restored step \(to) after a spike at step \(from); skipped \(skipped) micro-batches")
            }
            tokens = t
        case .baseline(let c):
            guarded { id in
                try store.record(run: id, step: c.step, tokens: c.tokens, metrics: [("baseline_relative", c.relative)])
                if c.alert {
                    try store.recordEvent(run: id, step: c.step, tokens: c.tokens, kind: "alert",
                                          message: String(format: "behind the baseline for %d eval points: %.4g vs %.4g (%+.2f%%)",
                                                          c.streak, c.value, c.baseline, c.relative * 100))
                }
            }
        }
    }

    /// "finished" or "failed", with core-hours = wall time × cores.
    public func finish(status: String) {
        let hours = Date().timeIntervalSince(started) * Double(cores) / 3600
        guarded { try store.finish(run: $0, status: status, coreHours: hours) }
    }
}
