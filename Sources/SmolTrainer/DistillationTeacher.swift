import Foundation
import SmolModel
import SmolTensor

/// The frozen teacher of a distillation run (`training.distill`): forward only, on the student's
/// micro-batch, giving the head its distribution per position at the run's temperature — whole,
/// or its top k (which can be cached on disk: a cache entry is keyed by the teacher's weights, k
/// and the micro-batch's tokens, so another run over the same data with another α, T or student
/// reads it instead of running the teacher).
public final class DistillationTeacher {
    public let model: LlamaModel
    public let alpha: Float, temperature: Float
    /// nil: the whole distribution.
    public let topK: Int?
    /// FNV-1a 64 of the teacher's float32 weights (ParameterStore.fingerprint).
    public let fingerprint: String
    let cacheDirectory: String?
    public private(set) var cacheHits = 0, cacheMisses = 0
    /// Seconds in the teacher's forward, its head and its softmax (or top-k selection) since the last reset.
    public private(set) var teacherSeconds = 0.0

    public init(model: LlamaModel, alpha: Double, temperature: Double, topK: Int?, cacheDirectory: String?) throws {
        self.model = model
        self.alpha = Float(alpha); self.temperature = Float(temperature); self.topK = topK
        fingerprint = model.parameters.fingerprint()
        self.cacheDirectory = cacheDirectory
        if let dir = cacheDirectory { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
    }

    public func resetTimers() { teacherSeconds = 0 }

    /// The teacher's side of `batch` for the student's head.
    public func target(for batch: TokenBatch) throws -> DistillationTarget {
        let t0 = DispatchTime.now().uptimeNanoseconds
        defer { teacherSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9 }
        let V = model.config.vocabSize, T = temperature
        guard let k = topK else {
            let model = self.model
            try Profiler.time("teacher") { try model.hiddenStates(batch) }
            return DistillationTarget(alpha: alpha, temperature: T) { [unowned self] r0, rows, p, plogp in
                let t0 = DispatchTime.now().uptimeNanoseconds
                model.headLogits(rows: r0 ..< r0 + rows, into: p)
                Parallel.forEach(rows, minPerChunk: 4) { i in
                    plogp[i] = DistillationLoss.teacherProbabilities(p + i * V, count: V, temperature: T)
                }
                teacherSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
            }
        }
        let top = try topLogits(batch, k: k)
        return DistillationTarget(alpha: alpha, temperature: T) { r0, rows, p, plogp in
            top.ids.withUnsafeBufferPointer { ids in
                top.values.withUnsafeBufferPointer { values in
                    Parallel.forEach(rows, minPerChunk: 4) { i in
                        let r = r0 + i
                        plogp[i] = DistillationLoss.sparseProbabilities(ids: ids.baseAddress! + r * k, values: values.baseAddress! + r * k, k: k,
                                                                       temperature: T, into: p + i * V, count: V)
                    }
                }
            }
        }
    }

    /// The teacher's k largest logits at every position of `batch` (at temperature 1, so a cache
    /// entry serves every T): from the cache, or computed (and cached).
    func topLogits(_ batch: TokenBatch, k: Int) throws -> (ids: [Int32], values: [Float]) {
        let n = batch.batch * batch.seqLen
        let file = cacheDirectory.map { ($0 as NSString).appendingPathComponent(cacheKey(batch, k: k) + ".topk") }
        if let file, let cached = TopKCacheFile.read(file, rows: n, k: k) { cacheHits += 1; return cached }
        cacheMisses += 1
        try Profiler.time("teacher") { try model.hiddenStates(batch) }
        let V = model.config.vocabSize
        var ids = [Int32](repeating: 0, count: n * k), values = [Float](repeating: 0, count: n * k)
        let chunk = max(1, min(n, (1 << 22) / max(V, 1)))
        let z = FloatBuffer(count: chunk * V)
        ids.withUnsafeMutableBufferPointer { idp in
            values.withUnsafeMutableBufferPointer { vp in
                var r0 = 0
                while r0 < n {
                    let rows = min(chunk, n - r0)
                    model.headLogits(rows: r0 ..< r0 + rows, into: z.pointer)
                    Parallel.forEach(rows, minPerChunk: 4) { i in
                        DistillationLoss.topK(z.pointer + i * V, count: V, k: k, ids: idp.baseAddress! + (r0 + i) * k, values: vp.baseAddress! + (r0 + i) * k)
                    }
                    r0 += rows
                }
            }
        }
        if let file { try TopKCacheFile.write(file, ids: ids, values: values, rows: n, k: k) }
        return (ids, values)
    }

    func cacheKey(_ batch: TokenBatch, k: Int) -> String {
        var h = FNV1a64()
        h.add(Array(fingerprint.utf8)); h.add(k); h.add(batch.batch); h.add(batch.seqLen)
        batch.tokens.withUnsafeBytes { h.add($0) }
        if let d = batch.documentStart { d.withUnsafeBytes { h.add($0) } }
        return h.hex
    }
}

/// A cached micro-batch of teacher top-k logits: "SMOLTOPK", rows and k (Int64 each), ids (Int32),
/// values (Float32). Written to a temporary name and renamed, so a killed run leaves no torn entry.
enum TopKCacheFile {
    static let magic = Array("SMOLTOPK".utf8)

    static func read(_ path: String, rows: Int, k: Int) -> (ids: [Int32], values: [Float])? {
        guard let data = FileManager.default.contents(atPath: path), data.count == 24 + rows * k * 8 else { return nil }
        return data.withUnsafeBytes { raw -> (ids: [Int32], values: [Float])? in
            guard Array(raw[0..<8]) == magic,
                  raw.loadUnaligned(fromByteOffset: 8, as: Int64.self) == Int64(rows),
                  raw.loadUnaligned(fromByteOffset: 16, as: Int64.self) == Int64(k) else { return nil }
            let ids = (0..<rows * k).map { raw.loadUnaligned(fromByteOffset: 24 + 4 * $0, as: Int32.self) }
            let values = (0..<rows * k).map { raw.loadUnaligned(fromByteOffset: 24 + 4 * (rows * k + $0), as: Float.self) }
            return (ids, values)
        }
    }

    static func write(_ path: String, ids: [Int32], values: [Float], rows: Int, k: Int) throws {
        var data = Data(magic)
        withUnsafeBytes(of: Int64(rows).littleEndian) { data.append(contentsOf: $0) }
        withUnsafeBytes(of: Int64(k).littleEndian) { data.append(contentsOf: $0) }
        ids.withUnsafeBytes { data.append(contentsOf: $0) }
        values.withUnsafeBytes { data.append(contentsOf: $0) }
        let tmp = path + ".tmp-\(getpid())"
        try data.write(to: URL(fileURLWithPath: tmp))
        guard rename(tmp, path) == 0 else {
            unlink(tmp)
            throw ConfigError.invalidFile(path: path, reason: "cannot write the teacher cache entry: \(String(cString: strerror(errno)))")
        }
    }
}
