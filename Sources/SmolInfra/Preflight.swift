import Foundation
import SmolMPI
import SmolTensor

/// One health check's figure on every rank and its verdict.
public struct PreflightCheck: Encodable, Sendable {
    public let name: String
    public let unit: String
    public let values: [Double]          // one per rank
    public let expected: Double?
    public let median: Double
    public let failingRanks: [Int]
    public var pass: Bool { failingRanks.isEmpty }
    enum CodingKeys: String, CodingKey { case name, unit, values, expected, median, failingRanks = "failing_ranks", pass }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name); try c.encode(unit, forKey: .unit); try c.encode(values, forKey: .values)
        try c.encodeIfPresent(expected, forKey: .expected); try c.encode(median, forKey: .median)
        try c.encode(failingRanks, forKey: .failingRanks); try c.encode(pass, forKey: .pass)
    }
}

public struct PreflightOptions: Sendable {
    /// A rank fails a check below threshold × expected, or below threshold × the median of the ranks.
    public var threshold = 0.8
    public var expectedGemmGflops: Double?
    public var expectedTriadGBps: Double?
    public var expectedDiskMBps: Double?
    public var expectedAllReduceBusGBps: Double?
    public var diskDirectory = "."
    public var diskMB = 128
    public init() {}
}

/// A short health check of GEMM, memory bandwidth, disk and (under MPI) all-reduce, compared with
/// expected figures and across ranks (the playbook found two throttling GPUs and an overheated node
/// this way).
public enum Preflight {
    public static func run(comm: Communicator?, options o: PreflightOptions) throws -> [PreflightCheck] {
        let rank = comm?.rank ?? 0
        // Test hook: SMOL_FAULT_SLOW_RANK=r scales rank r's local figures by 0.25, like a throttled
        // device. (At 0.5, two ranks timing GEMMs on two shared cores could differ by more than the
        // 1.33× that would hide it from the 0.8 × median rule.)
        let slow = ProcessInfo.processInfo.environment["SMOL_FAULT_SLOW_RANK"].flatMap(Int.init) == rank ? 0.25 : 1.0
        var local: [(String, String, Double, Double?)] = []
        local.append(("gemm", "GFLOP/s", PeakProbe.gemmGflops(n: 1024, repeats: 3) * slow, o.expectedGemmGflops))
        let triad = HardwareBench.stream(n: 8_000_000, repeats: 3).first { $0.name == "triad" }!.mbps / 1000
        local.append(("stream triad", "GB/s", triad * slow, o.expectedTriadGBps))
        let disk = try HardwareBench.disk(directory: o.diskDirectory, bytes: o.diskMB << 20)
        local.append(("disk write+fsync", "MB/s", disk.write * slow, o.expectedDiskMBps))

        var checks: [PreflightCheck] = []
        for (name, unit, value, expected) in local {
            let values = try gather(value, comm: comm)
            checks.append(verdict(name: name, unit: unit, values: values, expected: expected, threshold: o.threshold, compareRanks: true))
        }
        if let comm, comm.size > 1 {
            var opts = CollectiveOptions()
            opts.minBytes = 4 << 20; opts.maxBytes = 4 << 20; opts.iterations = 10; opts.warmup = 2
            let row = try CollectiveBench(comm: comm, options: opts).sweep(.allReduce)[0]
            let bw = [Double](repeating: row.busbw, count: comm.size)
            var c = verdict(name: "all_reduce 4 MiB busbw", unit: "GB/s", values: bw, expected: o.expectedAllReduceBusGBps,
                            threshold: o.threshold, compareRanks: false)
            if row.wrong > 0 { c = PreflightCheck(name: c.name + " (\(row.wrong) wrong values)", unit: c.unit, values: c.values, expected: c.expected, median: c.median, failingRanks: Array(0..<comm.size)) }
            checks.append(c)
        }
        return checks
    }

    static func gather(_ value: Double, comm: Communicator?) throws -> [Double] {
        guard let comm, comm.size > 1 else { return [value] }
        var send = Float(value)
        var recv = [Float](repeating: 0, count: comm.size)
        try recv.withUnsafeMutableBufferPointer { try comm.allGather(&send, $0.baseAddress!, count: 1) }
        return recv.map(Double.init)
    }

    public static func verdict(name: String, unit: String, values: [Double], expected: Double?, threshold: Double,
                               compareRanks: Bool) -> PreflightCheck {
        let sorted = values.sorted()
        let median = sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
        var failing: [Int] = []
        for (r, v) in values.enumerated() {
            if let e = expected, v < threshold * e { failing.append(r); continue }
            if compareRanks && values.count > 1 && v < threshold * median { failing.append(r) }
        }
        return PreflightCheck(name: name, unit: unit, values: values, expected: expected, median: median, failingRanks: failing)
    }
}
