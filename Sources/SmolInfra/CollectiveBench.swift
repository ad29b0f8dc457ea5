import Foundation
import SmolMPI

/// nccl-tests-style benchmark of MPI collectives through our Swift wrapper.
public enum Collective: String, CaseIterable, Codable, Sendable {
    case allReduce = "all_reduce", allGather = "all_gather", reduceScatter = "reduce_scatter"
    case broadcast, allToAll = "alltoall", sendRecv = "sendrecv"

    var cCode: Int32 { Int32(Collective.allCases.firstIndex(of: self)!) }

    /// nccl-tests' bus-bandwidth factor for n ranks.
    public func busFactor(ranks n: Int) -> Double {
        let n = Double(n)
        switch self {
        case .allReduce: return 2 * (n - 1) / n
        case .allGather, .reduceScatter, .allToAll: return (n - 1) / n
        case .broadcast, .sendRecv: return 1
        }
    }

    /// Elements in the per-rank send buffer for a test of `bytes` (nccl-tests: all_gather's size is
    /// the gathered output, so each rank sends size / n).
    func sendCount(bytes: Int, ranks n: Int) -> Int {
        let elements = bytes / 4
        switch self {
        case .allGather: return elements / n
        case .reduceScatter, .allToAll: return elements / n * n
        default: return elements
        }
    }

    func recvCount(send: Int, ranks n: Int) -> Int {
        switch self {
        case .allGather: return send * n
        case .reduceScatter: return send / n
        default: return send
        }
    }
}

public struct CollectiveRow: Codable, Sendable {
    public let op: Collective
    public let bytes: Int
    public let count: Int
    public let timeMicroseconds: Double
    public let algbw: Double
    public let busbw: Double
    public let wrong: Int
    enum CodingKeys: String, CodingKey { case op, bytes = "size", count, timeMicroseconds = "time_us", algbw, busbw, wrong = "wrong" }
}

public struct CollectiveOverhead: Encodable, Sendable {
    public let op: Collective
    public let bytes: Int
    public let swiftMicroseconds: Double
    public let cMicroseconds: Double
    public var percent: Double { 100 * (swiftMicroseconds - cMicroseconds) / cMicroseconds }
    enum CodingKeys: String, CodingKey { case op, bytes = "size", swiftMicroseconds = "swift_us", cMicroseconds = "c_us", percent }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(op, forKey: .op); try c.encode(bytes, forKey: .bytes); try c.encode(swiftMicroseconds, forKey: .swiftMicroseconds)
        try c.encode(cMicroseconds, forKey: .cMicroseconds); try c.encode(percent, forKey: .percent)
    }
}

public struct CollectiveOptions: Sendable {
    public var minBytes = 8, maxBytes = 1 << 20, factor = 2
    public var iterations = 20, warmup = 5, checks = 1
    public init() {}
}

public final class CollectiveBench {
    let comm: Communicator
    let options: CollectiveOptions
    /// Test hook: SMOL_FAULT_COLLECTIVE_RANK=r corrupts one received value on rank r.
    let faultRank = ProcessInfo.processInfo.environment["SMOL_FAULT_COLLECTIVE_RANK"].flatMap(Int.init)

    public init(comm: Communicator, options: CollectiveOptions) { self.comm = comm; self.options = options }

    /// Input value of element i on rank r: small integers, so every sum is exact in any order.
    @inline(__always) static func value(rank r: Int, index i: Int) -> Float { Float((r * 7 + i) % 13) }

    public var sizes: [Int] {
        var out: [Int] = [], s = max(options.minBytes, 4)
        while s <= options.maxBytes { out.append(s); if options.factor <= 1 { break }; s *= options.factor }
        return out
    }

    func run(_ op: Collective, send: UnsafeMutablePointer<Float>, recv: UnsafeMutablePointer<Float>, count: Int) throws {
        switch op {
        case .allReduce: try comm.allReduce(send, recv, count: count)
        case .allGather: try comm.allGather(send, recv, count: count)
        case .reduceScatter: try comm.reduceScatter(send, recv, count: count)
        case .broadcast: try comm.broadcast(send, count: count)
        case .allToAll: try comm.allToAll(send, recv, count: count)
        case .sendRecv: try comm.sendRecv(send, recv, count: count)
        }
    }

    func fill(_ send: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { send[i] = CollectiveBench.value(rank: comm.rank, index: i) }
    }

    /// Elements of this rank's result that differ from the exact expectation.
    func wrongCount(_ op: Collective, send: UnsafeMutablePointer<Float>, recv: UnsafeMutablePointer<Float>, count: Int) -> Int {
        let n = comm.size, me = comm.rank
        let out = op == .broadcast ? send : recv
        let outCount = op.recvCount(send: count, ranks: n)
        if faultRank == me && outCount > 0 { out[0] += 1 }
        var wrong = 0
        for i in 0..<outCount {
            let expected: Float
            switch op {
            case .allReduce: expected = (0..<n).reduce(0) { $0 + CollectiveBench.value(rank: $1, index: i) }
            case .allGather: expected = CollectiveBench.value(rank: i / count, index: i % count)
            case .reduceScatter: expected = (0..<n).reduce(0) { $0 + CollectiveBench.value(rank: $1, index: me * outCount + i) }
            case .broadcast: expected = CollectiveBench.value(rank: 0, index: i)
            case .allToAll: let block = count / n; expected = CollectiveBench.value(rank: i / block, index: me * block + i % block)
            case .sendRecv: expected = CollectiveBench.value(rank: (me + n - 1) % n, index: i)
            }
            if out[i] != expected { wrong += 1 }   // bit-exact: the inputs make every sum exact
        }
        return wrong
    }

    /// Runs the size sweep for `op`; results are the same on every rank (times are rank maxima).
    public func sweep(_ op: Collective) throws -> [CollectiveRow] {
        let n = comm.size
        var rows: [CollectiveRow] = []
        for bytes in sizes {
            let count = op.sendCount(bytes: bytes, ranks: n)
            if count == 0 || op.recvCount(send: count, ranks: n) == 0 { continue }
            let send = UnsafeMutablePointer<Float>.allocate(capacity: count)
            let recv = UnsafeMutablePointer<Float>.allocate(capacity: max(op.recvCount(send: count, ranks: n), 1))
            defer { send.deallocate(); recv.deallocate() }
            fill(send, count: count)
            for _ in 0..<options.warmup { try run(op, send: send, recv: recv, count: count) }
            try comm.barrier()
            let t0 = comm.wallTime
            for _ in 0..<options.iterations { try run(op, send: send, recv: recv, count: count) }
            try comm.barrier()
            let local = (comm.wallTime - t0) / Double(options.iterations)
            let seconds = try comm.allReduce(local, op: .max)
            var wrong = 0
            for _ in 0..<options.checks {
                fill(send, count: count)
                try run(op, send: send, recv: recv, count: count)
                wrong += wrongCount(op, send: send, recv: recv, count: count)
            }
            let totalWrong = Int(try comm.allReduce(Double(wrong), op: .sum))
            let size = op == .allGather ? count * 4 * n : count * 4
            let algbw = Double(size) / seconds / 1e9
            rows.append(CollectiveRow(op: op, bytes: size, count: count, timeMicroseconds: seconds * 1e6, algbw: algbw,
                                      busbw: algbw * op.busFactor(ranks: n), wrong: totalWrong))
        }
        return rows
    }

    /// Our wrapper's time against the plain C loop in CMPI/shim.h at `bytes`, same buffers and iterations.
    public func overhead(_ op: Collective, bytes: Int) throws -> CollectiveOverhead {
        let n = comm.size, count = op.sendCount(bytes: bytes, ranks: n)
        let send = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
        let recv = UnsafeMutablePointer<Float>.allocate(capacity: max(op.recvCount(send: count, ranks: n), 1))
        defer { send.deallocate(); recv.deallocate() }
        fill(send, count: count)
        var swiftBest = Double.infinity, cBest = Double.infinity
        for _ in 0..<3 {   // alternate, best of three each, to share the machine's noise
            try comm.barrier()
            let t0 = comm.wallTime
            for _ in 0..<options.iterations { try run(op, send: send, recv: recv, count: count) }
            try comm.barrier()
            swiftBest = min(swiftBest, try comm.allReduce((comm.wallTime - t0) / Double(options.iterations), op: .max))
            let c = comm.cLoopSeconds(op: op.cCode, send: send, recv: recv, count: count, iterations: options.iterations)
            cBest = min(cBest, try comm.allReduce(c, op: .max))
        }
        return CollectiveOverhead(op: op, bytes: bytes, swiftMicroseconds: swiftBest * 1e6, cMicroseconds: cBest * 1e6)
    }
}
