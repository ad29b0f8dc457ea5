import Foundation

/// Wall-clock time per named region, on when SMOL_PROFILE=1 (printed by `report()`).
/// Regions are timed on the calling thread around whole (internally parallel) ops.
public enum Profiler {
    public static let enabled = ProcessInfo.processInfo.environment["SMOL_PROFILE"] == "1"
    nonisolated(unsafe) static var totals: [String: Double] = [:]

    @inline(__always)
    @discardableResult
    public static func time<T>(_ name: String, _ body: () throws -> T) rethrows -> T {
        guard enabled else { return try body() }
        let t0 = DispatchTime.now().uptimeNanoseconds
        defer { totals[name, default: 0] += Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9 }
        return try body()
    }

    public static func report() -> String {
        let total = totals.values.reduce(0, +)
        return totals.sorted { $0.value > $1.value }.map {
            $0.key.padding(toLength: 16, withPad: " ", startingAt: 0)
                + String(format: "%8.3f s %5.1f%%", $0.value, 100 * $0.value / max(total, 1e-9))
        }.joined(separator: "\n")
    }
}
