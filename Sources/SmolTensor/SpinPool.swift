import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Fork–join for many tiny parallel steps (decoding one token runs ~150 of them, each tens of
/// microseconds): the workers spin on a generation counter for a while before sleeping, so a
/// step costs a cache-line handoff instead of a futex wake-up through Dispatch.
public final class SpinPool: @unchecked Sendable {
    public static let shared = SpinPool(threads: Parallel.threads)

    public let threads: Int
    private let generation = Atomic<Int>(0)
    private let pending = Atomic<Int>(0)
    private let sleeping = Atomic<Int>(0)
    private var job: ((Int) -> Void)?
    private var mutex = pthread_mutex_t()
    private var condition = pthread_cond_t()
    /// Spin iterations before a worker sleeps (about a millisecond).
    private let spinLimit = 200_000

    init(threads: Int) {
        self.threads = max(1, threads)
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&condition, nil)
        for w in 1..<self.threads {
            let t = Thread { [unowned self] in self.workerLoop(index: w) }
            t.stackSize = 1 << 20
            t.start()
        }
    }

    private func workerLoop(index: Int) {
        var seen = 0
        while true {
            var spins = 0
            while generation.load(ordering: .acquiring) == seen {
                spins += 1
                if spins > spinLimit {
                    pthread_mutex_lock(&mutex)
                    sleeping.add(1, ordering: .sequentiallyConsistent)
                    while generation.load(ordering: .sequentiallyConsistent) == seen { pthread_cond_wait(&condition, &mutex) }
                    sleeping.subtract(1, ordering: .sequentiallyConsistent)
                    pthread_mutex_unlock(&mutex)
                    spins = 0
                }
            }
            seen = generation.load(ordering: .acquiring)
            job?(index)
            pending.subtract(1, ordering: .releasing)
        }
    }

    /// Runs body(0) ... body(threads - 1) in parallel, body(0) on the calling thread, and returns
    /// when all are done. Not reentrant: call it from one thread at a time.
    public func run(_ body: (Int) -> Void) {
        if threads == 1 { body(0); return }
        withoutActuallyEscaping(body) { escaping in
            job = escaping
            pending.store(threads - 1, ordering: .relaxed)
            generation.add(1, ordering: .sequentiallyConsistent)
            if sleeping.load(ordering: .sequentiallyConsistent) > 0 {
                pthread_mutex_lock(&mutex); pthread_cond_broadcast(&condition); pthread_mutex_unlock(&mutex)
            }
            escaping(0)
            while pending.load(ordering: .acquiring) > 0 {}
            job = nil
        }
    }

    /// Splits 0..<n into `threads` contiguous ranges and runs them in parallel.
    public func chunks(_ n: Int, _ body: (Range<Int>) -> Void) {
        if n <= 0 { return }
        let parts = min(threads, n)
        if parts == 1 { body(0..<n); return }
        run { p in
            guard p < parts else { return }
            body((n * p / parts)..<(n * (p + 1) / parts))
        }
    }
}
