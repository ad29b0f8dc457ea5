import Foundation
import SmolRuns

/// Downsampled series already computed, keyed by the request and stamped with the run's
/// heartbeat (refreshed with every metric row the run writes) and status: a finished run's curves
/// are computed once, however often the page polls. Downsampling a 4.7M-step series reads every
/// row (about 4 s here); a cached one answers at once. At most `capacity` views are kept.
final class SeriesCache: @unchecked Sendable {
    struct Key: Hashable { let run: Int64, metric: String, from: Int?, to: Int?, points: Int }
    struct Stamp: Equatable { let heartbeat: Double, status: String, ended: Double? }

    private let lock = NSLock()
    private var entries: [Key: (stamp: Stamp, view: SeriesView, used: UInt64)] = [:]
    private var clock: UInt64 = 0
    let capacity: Int

    init(capacity: Int = 64) { self.capacity = capacity }

    func view(_ key: Key, run: RunRecord, compute: () throws -> SeriesView) rethrows -> SeriesView {
        let stamp = Stamp(heartbeat: run.heartbeatAt, status: run.status, ended: run.endedAt)
        lock.lock()
        clock += 1
        if let e = entries[key], e.stamp == stamp {
            entries[key]!.used = clock
            lock.unlock()
            return e.view
        }
        lock.unlock()
        let v = try compute()
        lock.lock()
        defer { lock.unlock() }
        if entries.count >= capacity, entries[key] == nil, let oldest = entries.min(by: { $0.value.used < $1.value.used })?.key {
            entries.removeValue(forKey: oldest)
        }
        clock += 1
        entries[key] = (stamp, v, clock)
        return v
    }
}
