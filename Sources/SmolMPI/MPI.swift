import CMPI
import Foundation
import SmolTensor

public struct MPIError: Error, CustomStringConvertible {
    public let call: String, code: Int32
    public var description: String { "\(call) failed with MPI error code \(code)" }
}

/// A thin Swift wrapper over MPI's C API, float32 buffers: on MPI_COMM_WORLD, or on a group of it
/// that `split` made (the data-parallel or tensor-parallel group of a 2-D topology).
/// One world `Communicator` per process: `init` calls MPI_Init, `finalize()` MPI_Finalize.
public final class Communicator: Collectives {
    /// Most elements one MPI call carries: counts are Int32, and Open MPI's large-message algorithms
    /// allocate temporaries of the message's size, so 16M floats (64 MB) bound that memory.
    /// SMOL_MPI_MAX_COUNT changes it (tests lower it to exercise the pieces).
    public let maxCount: Int = Int(ProcessInfo.processInfo.environment["SMOL_MPI_MAX_COUNT"] ?? "") ?? (1 << 24)
    public let rank: Int
    public let size: Int
    /// MPI_COMM_WORLD, or the group `split` made.
    let comm: MPI_Comm
    /// The world communicator, whose `finalize` ends MPI; nil for the world itself.
    private let parent: Communicator?
    private var finalized = false

    /// True when this process was started by mpirun (Open MPI sets OMPI_COMM_WORLD_SIZE).
    public static var launchedByMPI: Bool { ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] != nil }

    public init() throws {
        try Communicator.check("MPI_Init", MPI_Init(nil, nil))
        comm = smol_comm_world()
        parent = nil
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(comm, &r)
        MPI_Comm_size(comm, &s)
        rank = Int(r); size = Int(s)
    }

    private init(comm: MPI_Comm, parent: Communicator) {
        self.comm = comm
        self.parent = parent
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(comm, &r)
        MPI_Comm_size(comm, &s)
        rank = Int(r); size = Int(s)
    }

    /// The ranks of this communicator with the same `color`, ordered by `key` (MPI_Comm_split).
    /// Every rank must call it.
    public func split(color: Int, key: Int) throws -> Collectives {
        var out: MPI_Comm? = smol_comm_null()
        try Communicator.check("MPI_Comm_split", MPI_Comm_split(comm, Int32(color), Int32(key), &out))
        guard let group = out else { throw MPIError(call: "MPI_Comm_split", code: -1) }
        return Communicator(comm: group, parent: parent ?? self)
    }

    public func finalize() {
        guard parent == nil else { return }
        if !finalized { MPI_Finalize(); finalized = true }
    }

    static func check(_ call: String, _ code: Int32) throws {
        if code != MPI_SUCCESS { throw MPIError(call: call, code: code) }
    }

    /// Ends every rank of the job (a rank that failed alone, while others may wait in a collective).
    public func abort(code: Int32) -> Never {
        MPI_Abort(smol_comm_world(), code)   // the whole job, whatever group this is
        exit(code)
    }

    public func barrier() throws { try Communicator.check("MPI_Barrier", MPI_Barrier(comm)) }

    public var wallTime: Double { MPI_Wtime() }

    /// recv[i] = Σ_ranks send[i]; `send == nil` reduces `recv` in place.
    public func allReduce(_ send: UnsafePointer<Float>?, _ recv: UnsafeMutablePointer<Float>, count: Int) throws {
        try Communicator.check("MPI_Allreduce", MPI_Allreduce(send.map { UnsafeRawPointer($0) } ?? UnsafeRawPointer(smol_in_place()),
                                                              recv, Int32(count), smol_float(), smol_sum(), comm))
    }

    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        var start = 0
        while start < count {
            let n = min(maxCount, count - start)
            try allReduce(nil, buffer + start, count: n)
            start += n
        }
    }

    /// Pieces of at most maxCount elements over all ranks: rank r's shard advances `step` per round.
    private func rounds(_ shards: [Range<Int>]) -> (step: Int, count: Int) {
        let step = max(1, maxCount / size)
        let longest = shards.map(\.count).max() ?? 0
        return (step, max(1, (longest + step - 1) / step))
    }

    /// Rank r's piece of round k: shards[r] [k·step, (k+1)·step).
    private func piece(_ s: Range<Int>, _ k: Int, _ step: Int) -> Range<Int> {
        let lo = min(s.lowerBound + k * step, s.upperBound)
        return lo..<min(lo + step, s.upperBound)
    }

    /// Shards must be consecutive ranges in rank order (evenShards). One round (the common case):
    /// MPI_Reduce_scatter in place, no copy but the own block's move into position. Several rounds:
    /// each round's pieces are packed into one buffer of at most maxCount elements.
    public func reduceScatterSum(_ buffer: UnsafeMutablePointer<Float>, shards: [Range<Int>], out: UnsafeMutablePointer<Float>) throws {
        let (step, n) = rounds(shards)
        if n == 1 {
            let counts = shards.map { Int32($0.count) }
            try Communicator.check("MPI_Reduce_scatter", MPI_Reduce_scatter(smol_in_place(), buffer, counts, smol_float(), smol_sum(), comm))
            // In place, the result lands at the start of the buffer.
            memmove(out, buffer, shards[rank].count * MemoryLayout<Float>.stride)
            return
        }
        let pack = UnsafeMutablePointer<Float>.allocate(capacity: step * size)
        defer { pack.deallocate() }
        for k in 0..<n {
            var counts = [Int32](), at = 0
            for s in shards {
                let p = piece(s, k, step)
                (pack + at).update(from: buffer + p.lowerBound, count: p.count)
                counts.append(Int32(p.count)); at += p.count
            }
            try Communicator.check("MPI_Reduce_scatter", MPI_Reduce_scatter(smol_in_place(), pack, counts, smol_float(), smol_sum(), comm))
            (out + k * step).update(from: pack, count: Int(counts[rank]))
        }
    }

    public func allGather(_ buffer: UnsafeMutablePointer<Float>, shards: [Range<Int>]) throws {
        let (step, n) = rounds(shards)
        if n == 1 {
            let counts = shards.map { Int32($0.count) }, displs = shards.map { Int32($0.lowerBound) }
            try Communicator.check("MPI_Allgatherv", MPI_Allgatherv(smol_in_place(), 0, smol_float(), buffer, counts, displs,
                                                                   smol_float(), comm))
            return
        }
        let pack = UnsafeMutablePointer<Float>.allocate(capacity: step * size)
        defer { pack.deallocate() }
        for k in 0..<n {
            var counts = [Int32](), displs = [Int32](), at = 0
            for s in shards {
                let p = piece(s, k, step)
                counts.append(Int32(p.count)); displs.append(Int32(at)); at += p.count
            }
            let mine = piece(shards[rank], k, step)
            (pack + Int(displs[rank])).update(from: buffer + mine.lowerBound, count: mine.count)
            try Communicator.check("MPI_Allgatherv", MPI_Allgatherv(smol_in_place(), 0, smol_float(), pack, counts, displs,
                                                                   smol_float(), comm))
            for (r, s) in shards.enumerated() where r != rank {
                let p = piece(s, k, step)
                (buffer + p.lowerBound).update(from: pack + Int(displs[r]), count: p.count)
            }
        }
    }

    public func allGather(_ bytes: [UInt8]) throws -> [[UInt8]] {
        var mine = Int32(bytes.count)
        var lengths = [Int32](repeating: 0, count: size)
        try Communicator.check("MPI_Allgather", MPI_Allgather(&mine, 1, smol_int(), &lengths, 1, smol_int(), comm))
        var displs = [Int32](), at: Int32 = 0
        for l in lengths { displs.append(at); at += l }
        var all = [UInt8](repeating: 0, count: Int(at))
        try bytes.withUnsafeBufferPointer { b in
            try Communicator.check("MPI_Allgatherv", MPI_Allgatherv(b.baseAddress, mine, smol_byte(), &all, lengths, displs, smol_byte(), comm))
        }
        return (0..<size).map { Array(all[Int(displs[$0]) ..< Int(displs[$0] + lengths[$0])]) }
    }

    /// Double-precision max/min/sum over ranks of one value (for comparing ranks in preflight).
    public func allReduce(_ value: Double, op: ReduceOp) throws -> Double {
        var v = value, out = 0.0
        let mpiOp = op == .sum ? smol_sum() : (op == .max ? smol_max() : smol_min())
        try Communicator.check("MPI_Allreduce", MPI_Allreduce(&v, &out, 1, smol_double(), mpiOp, comm))
        return out
    }

    /// recv [size · count] = concatenation of every rank's send [count].
    public func allGather(_ send: UnsafePointer<Float>, _ recv: UnsafeMutablePointer<Float>, count: Int) throws {
        try Communicator.check("MPI_Allgather", MPI_Allgather(send, Int32(count), smol_float(), recv, Int32(count), smol_float(), comm))
    }

    /// recv [count / size] = this rank's block of Σ_ranks send [count].
    public func reduceScatter(_ send: UnsafePointer<Float>, _ recv: UnsafeMutablePointer<Float>, count: Int) throws {
        try Communicator.check("MPI_Reduce_scatter_block", MPI_Reduce_scatter_block(send, recv, Int32(count / size), smol_float(), smol_sum(), comm))
    }

    public func broadcast(_ buffer: UnsafeMutablePointer<Float>, count: Int, root: Int = 0) throws {
        try Communicator.check("MPI_Bcast", MPI_Bcast(buffer, Int32(count), smol_float(), Int32(root), comm))
    }

    /// Block j of send [count] goes to rank j; recv block i comes from rank i.
    public func allToAll(_ send: UnsafePointer<Float>, _ recv: UnsafeMutablePointer<Float>, count: Int) throws {
        try Communicator.check("MPI_Alltoall", MPI_Alltoall(send, Int32(count / size), smol_float(), recv, Int32(count / size), smol_float(), comm))
    }

    /// Ring exchange: send to rank + 1, receive from rank − 1.
    public func sendRecv(_ send: UnsafePointer<Float>, _ recv: UnsafeMutablePointer<Float>, count: Int) throws {
        try Communicator.check("MPI_Sendrecv", MPI_Sendrecv(send, Int32(count), smol_float(), Int32((rank + 1) % size), 0,
                                                            recv, Int32(count), smol_float(), Int32((rank + size - 1) % size), 0,
                                                            comm, smol_status_ignore()))
    }

    /// The same collective timed in plain C (see CMPI/shim.h), mean seconds per iteration.
    public func cLoopSeconds(op: Int32, send: UnsafeMutablePointer<Float>, recv: UnsafeMutablePointer<Float>, count: Int, iterations: Int) -> Double {
        smol_c_loop(op, send, recv, Int32(count), Int32(iterations))
    }
}
