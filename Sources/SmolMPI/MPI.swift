import CMPI
import Foundation

public struct MPIError: Error, CustomStringConvertible {
    public let call: String, code: Int32
    public var description: String { "\(call) failed with MPI error code \(code)" }
}

/// A thin Swift wrapper over MPI's C API on MPI_COMM_WORLD, float32 buffers.
/// One `Communicator` per process: `init` calls MPI_Init, `finalize()` MPI_Finalize.
public final class Communicator {
    public let rank: Int
    public let size: Int
    private var finalized = false

    /// True when this process was started by mpirun (Open MPI sets OMPI_COMM_WORLD_SIZE).
    public static var launchedByMPI: Bool { ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] != nil }

    public init() throws {
        try Communicator.check("MPI_Init", MPI_Init(nil, nil))
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(smol_comm_world(), &r)
        MPI_Comm_size(smol_comm_world(), &s)
        rank = Int(r); size = Int(s)
    }

    public func finalize() {
        if !finalized { MPI_Finalize(); finalized = true }
    }

    static func check(_ call: String, _ code: Int32) throws {
        if code != MPI_SUCCESS { throw MPIError(call: call, code: code) }
    }

    public func barrier() throws { try Communicator.check("MPI_Barrier", MPI_Barrier(smol_comm_world())) }

    public var wallTime: Double { MPI_Wtime() }

    /// recv[i] = Σ_ranks send[i]; `send == nil` reduces `recv` in place.
    public func allReduce(_ send: UnsafePointer<Float>?, _ recv: UnsafeMutablePointer<Float>, count: Int) throws {
        try Communicator.check("MPI_Allreduce", MPI_Allreduce(send.map { UnsafeRawPointer($0) } ?? UnsafeRawPointer(smol_in_place()),
                                                              recv, Int32(count), smol_float(), smol_sum(), smol_comm_world()))
    }

    /// Double-precision max/min/sum over ranks of one value (for comparing ranks in preflight).
    public func allReduce(_ value: Double, op: ReduceOp) throws -> Double {
        var v = value, out = 0.0
        let mpiOp = op == .sum ? smol_sum() : (op == .max ? smol_max() : smol_min())
        try Communicator.check("MPI_Allreduce", MPI_Allreduce(&v, &out, 1, smol_double(), mpiOp, smol_comm_world()))
        return out
    }
    public enum ReduceOp { case sum, max, min }

    /// recv [size · count] = concatenation of every rank's send [count].
    public func allGather(_ send: UnsafePointer<Float>, _ recv: UnsafeMutablePointer<Float>, count: Int) throws {
        try Communicator.check("MPI_Allgather", MPI_Allgather(send, Int32(count), smol_float(), recv, Int32(count), smol_float(), smol_comm_world()))
    }

    /// recv [count / size] = this rank's block of Σ_ranks send [count].
    public func reduceScatter(_ send: UnsafePointer<Float>, _ recv: UnsafeMutablePointer<Float>, count: Int) throws {
        try Communicator.check("MPI_Reduce_scatter_block", MPI_Reduce_scatter_block(send, recv, Int32(count / size), smol_float(), smol_sum(), smol_comm_world()))
    }

    public func broadcast(_ buffer: UnsafeMutablePointer<Float>, count: Int, root: Int = 0) throws {
        try Communicator.check("MPI_Bcast", MPI_Bcast(buffer, Int32(count), smol_float(), Int32(root), smol_comm_world()))
    }

    /// Block j of send [count] goes to rank j; recv block i comes from rank i.
    public func allToAll(_ send: UnsafePointer<Float>, _ recv: UnsafeMutablePointer<Float>, count: Int) throws {
        try Communicator.check("MPI_Alltoall", MPI_Alltoall(send, Int32(count / size), smol_float(), recv, Int32(count / size), smol_float(), smol_comm_world()))
    }

    /// Ring exchange: send to rank + 1, receive from rank − 1.
    public func sendRecv(_ send: UnsafePointer<Float>, _ recv: UnsafeMutablePointer<Float>, count: Int) throws {
        try Communicator.check("MPI_Sendrecv", MPI_Sendrecv(send, Int32(count), smol_float(), Int32((rank + 1) % size), 0,
                                                            recv, Int32(count), smol_float(), Int32((rank + size - 1) % size), 0,
                                                            smol_comm_world(), smol_status_ignore()))
    }

    /// The same collective timed in plain C (see CMPI/shim.h), mean seconds per iteration.
    public func cLoopSeconds(op: Int32, send: UnsafeMutablePointer<Float>, recv: UnsafeMutablePointer<Float>, count: Int, iterations: Int) -> Double {
        smol_c_loop(op, send, recv, Int32(count), Int32(iterations))
    }
}
