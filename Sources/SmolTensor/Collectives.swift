import Foundation

/// The collectives a data-parallel or tensor-parallel step needs, over float32 buffers and a
/// few scalars. Open MPI implements it (SmolMPI.Communicator); NCCL can later. `SingleProcess` is
/// the world of one. Buffers are split into calls of at most `maxCount` elements, so no count ever
/// overflows MPI's Int32.
public protocol Collectives: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// buffer[i] = Σ over ranks of buffer[i], in place.
    func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws
    /// One double reduced over ranks.
    func allReduce(_ value: Double, op: ReduceOp) throws -> Double
    /// `buffer` holds every rank's full array; afterwards `shard` (this rank's range of it, `shards`
    /// listing every rank's in rank order) holds the sum over ranks of that range, written to `out`.
    func reduceScatterSum(_ buffer: UnsafeMutablePointer<Float>, shards: [Range<Int>], out: UnsafeMutablePointer<Float>) throws
    /// Each rank's `shards[rank]` range of `buffer` is copied into every rank's `buffer`.
    func allGather(_ buffer: UnsafeMutablePointer<Float>, shards: [Range<Int>]) throws
    /// Every rank's bytes, in rank order.
    func allGather(_ bytes: [UInt8]) throws -> [[UInt8]]
    func barrier() throws
    /// The ranks with the same `color`, ordered by `key`: a group of this one (the data-parallel or
    /// tensor-parallel group of a dp × tp world). Every rank must call it.
    func split(color: Int, key: Int) throws -> Collectives
}

public enum ReduceOp: Sendable { case sum, max, min }

/// The world of one process: every collective is the identity.
public final class SingleProcess: Collectives {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {}
    public func allReduce(_ value: Double, op: ReduceOp) throws -> Double { value }
    public func reduceScatterSum(_ buffer: UnsafeMutablePointer<Float>, shards: [Range<Int>], out: UnsafeMutablePointer<Float>) throws {
        out.update(from: buffer + shards[0].lowerBound, count: shards[0].count)
    }
    public func allGather(_ buffer: UnsafeMutablePointer<Float>, shards: [Range<Int>]) throws {}
    public func allGather(_ bytes: [UInt8]) throws -> [[UInt8]] { [bytes] }
    public func barrier() throws {}
    public func split(color: Int, key: Int) throws -> Collectives { SingleProcess() }
}

/// A dp × tp world's two groups for one rank: its tensor-parallel group (tp consecutive ranks, one
/// node's on a cluster; nil while tp = 1) and its data-parallel group (the ranks holding the same
/// shards, one per model replica; the world while tp = 1). World rank = dp index · tp + tp index.
public struct ParallelGroups {
    public let tensor: Collectives?
    public let data: Collectives

    /// Every rank of `world` must call it (MPI_Comm_split is collective).
    public init(world: Collectives, tp: Int) throws {
        guard tp > 1 else { tensor = nil; data = world; return }
        tensor = try world.split(color: world.rank / tp, key: world.rank % tp)
        data = try world.split(color: world.rank % tp, key: world.rank / tp)
    }
}

/// Contiguous shards of `count` elements over `ranks`, each a multiple of 16 floats long (64-byte
/// aligned starts) except the last.
public func evenShards(count: Int, ranks: Int) -> [Range<Int>] {
    let per = ((count + ranks - 1) / ranks + 15) / 16 * 16
    return (0..<ranks).map { r in min(r * per, count)..<min((r + 1) * per, count) }
}
