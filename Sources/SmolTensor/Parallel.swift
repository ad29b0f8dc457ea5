import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Deterministic data parallelism: work is split into `threads` contiguous chunks in a fixed way,
/// so reductions that combine per-chunk partials in chunk order give the same bits every run.
public enum Parallel {
    /// Worker count for our own kernels. Set once at start-up (SMOL_THREADS or all cores).
    nonisolated(unsafe) public static var threads: Int = {
        if let s = ProcessInfo.processInfo.environment["SMOL_THREADS"], let n = Int(s), n > 0 { return n }
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }()

    /// Calls `body(chunkIndex, range)` for `threads` (or fewer) contiguous slices of 0..<n.
    @inline(__always)
    public static func chunks(_ n: Int, minPerChunk: Int = 1, _ body: (Int, Range<Int>) -> Void) {
        if n <= 0 { return }
        let parts = max(1, min(threads, n / max(minPerChunk, 1)))
        if parts == 1 { body(0, 0..<n); return }
        DispatchQueue.concurrentPerform(iterations: parts) { p in
            let lo = n * p / parts, hi = n * (p + 1) / parts
            body(p, lo..<hi)
        }
    }

    /// Calls `body(i)` for every i in 0..<n, spread over the workers in contiguous slices.
    @inline(__always)
    public static func forEach(_ n: Int, minPerChunk: Int = 1, _ body: (Int) -> Void) {
        chunks(n, minPerChunk: minPerChunk) { _, r in for i in r { body(i) } }
    }

    /// Dynamic scheduling for uneven tasks (e.g. causal attention blocks). Each task must write
    /// disjoint memory, so the order does not affect the result.
    public static func tasks(_ n: Int, _ body: (Int) -> Void) {
        if n <= 0 { return }
        if threads == 1 || n == 1 { for i in 0..<n { body(i) }; return }
        DispatchQueue.concurrentPerform(iterations: n) { i in body(i) }
    }
}
