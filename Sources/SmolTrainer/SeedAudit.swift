import Foundation
import SmolModel
import SmolTensor

/// The seed audit, before step 1: the ranks exchange a fingerprint of every tensor they hold, and
/// every rank checks the same three rules, so all stop together with the same message:
/// - the tensor-parallel ranks of a group hold *different* shards of every sharded tensor that is
///   not constant (identical or perfectly correlated shards mean the ranks drew them from one seed:
///   the playbook's restart after 1 trillion tokens);
/// - they hold the *same* values of every replicated tensor (embeddings, norms);
/// - data-parallel replicas (the same tensor-parallel rank of each group) hold the same values.
public enum SeedAudit {
    /// What one rank tells the others about one tensor.
    struct Fingerprint: Codable {
        /// FNV-1a over the float32 values' bit patterns.
        var hash: UInt64
        /// Every value the same (a zero bias, a norm's ones): shards may then agree.
        var constant: Bool
        /// The first values, to catch shards that differ only by a scale or a sign.
        var sample: [Float]
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    static let sampleCount = 256

    static func fingerprint(_ p: UnsafePointer<Float>, count: Int) -> Fingerprint {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for i in 0..<count { h = (h ^ UInt64(p[i].bitPattern)) &* 0x100_0000_01b3 }
        let constant = (0..<count).allSatisfy { p[$0] == p[0] }
        return Fingerprint(hash: h, constant: constant, sample: Array(UnsafeBufferPointer(start: p, count: min(count, sampleCount))))
    }

    /// |Pearson correlation| of two samples (0 when either is constant).
    static func correlation(_ a: [Float], _ b: [Float]) -> Double {
        let n = min(a.count, b.count)
        guard n > 1 else { return 0 }
        let ma = a.prefix(n).reduce(0.0) { $0 + Double($1) } / Double(n), mb = b.prefix(n).reduce(0.0) { $0 + Double($1) } / Double(n)
        var sab = 0.0, saa = 0.0, sbb = 0.0
        for i in 0..<n {
            let x = Double(a[i]) - ma, y = Double(b[i]) - mb
            sab += x * y; saa += x * x; sbb += y * y
        }
        return saa > 0 && sbb > 0 ? abs(sab) / (saa * sbb).squareRoot() : 0
    }

    /// Runs the audit over `world` (rank = dp index · tp + tp index). Throws `Failure` naming the
    /// tensors and the ranks; returns the number of tensors checked.
    @discardableResult
    public static func run(parameters: ParameterStore, world: Collectives, tp: Int, vocabParallel: Bool = false) throws -> Int {
        let mine = parameters.slots.map { fingerprint(parameters.values.pointer + $0.offset, count: $0.count) }
        let all = try world.allGather(Array(try JSONEncoder().encode(mine))).map { try JSONDecoder().decode([Fingerprint].self, from: Data($0)) }
        return try check(all, names: parameters.slots.map(\.name), tp: tp, vocabParallel: vocabParallel)
    }

    /// The rules over every rank's fingerprints (`all[rank][tensor]`), the tensors' `names` in order.
    static func check(_ all: [[Fingerprint]], names: [String], tp: Int, vocabParallel: Bool = false) throws -> Int {
        let dp = all.count / tp
        var shared: [String: [String]] = [:], replicaDiff: [String: [String]] = [:], dataDiff: [String: [String]] = [:]
        for (i, name) in names.enumerated() {
            let split = TensorParallelPlan.split(of: name, vocabParallel: vocabParallel)
            for d in 0..<dp {
                for a in 0..<tp {
                    for b in (a + 1)..<tp {
                        let fa = all[d * tp + a][i], fb = all[d * tp + b][i]
                        let pair = "\(d * tp + a) and \(d * tp + b)"
                        if split == .replicated {
                            if fa.hash != fb.hash { replicaDiff[pair, default: []].append(name) }
                        } else if !fa.constant && !fb.constant && (fa.hash == fb.hash || correlation(fa.sample, fb.sample) > 0.9999) {
                            shared[pair, default: []].append(name)
                        }
                    }
                }
            }
            for t in 0..<tp {
                for d in 1..<dp where all[d * tp + t][i].hash != all[t][i].hash {
                    dataDiff["\(t) and \(d * tp + t)", default: []].append(name)
                }
            }
        }
        return try report(shared: shared, replicaDiff: replicaDiff, dataDiff: dataDiff, checked: names.count)
    }

    /// Names grouped by what they are: "self_attn.q_proj.weight, mlp.up_proj.weight in layers 0–1", the rest whole.
    static func list(_ names: [String]) -> String {
        var kinds: [String] = [], layers: Set<Int> = [], others: [String] = []
        for n in names {
            let parts = n.split(separator: ".", maxSplits: 3).map(String.init)
            if parts.count == 4, parts[0] == "model", parts[1] == "layers", let l = Int(parts[2]) {
                layers.insert(l)
                if !kinds.contains(parts[3]) { kinds.append(parts[3]) }
            } else {
                others.append(n)
            }
        }
        var out = others
        if !kinds.isEmpty {
            let ls = layers.sorted()
            let span = ls.count == 1 ? "layer \(ls[0])" : (ls.last! - ls.first! + 1 == ls.count ? "layers \(ls.first!)–\(ls.last!)" : "layers " + ls.map(String.init).joined(separator: ", "))
            out.append(kinds.joined(separator: ", ") + " in " + span)
        }
        return out.joined(separator: "; ")
    }

    static func report(shared: [String: [String]], replicaDiff: [String: [String]], dataDiff: [String: [String]], checked: Int) throws -> Int {
        var problems: [String] = []
        for (pair, names) in shared.sorted(by: { $0.key < $1.key }) {
            problems.append("tensor-parallel ranks \(pair) hold identical shards of \(names.count) tensor(s), as if drawn from one seed: \(list(names))")
        }
        for (pair, names) in replicaDiff.sorted(by: { $0.key < $1.key }) {
            problems.append("tensor-parallel ranks \(pair) hold different copies of \(names.count) replicated tensor(s): \(list(names))")
        }
        for (pair, names) in dataDiff.sorted(by: { $0.key < $1.key }) {
            problems.append("data-parallel replicas \(pair) differ in \(names.count) tensor(s): \(list(names))")
        }
        if !problems.isEmpty {
            throw Failure(description: "seed audit failed before step 1: " + problems.joined(separator: "; ")
                          + " (parallel.audit: false trains anyway)")
        }
        return checked
    }
}
