import Foundation

/// What the machine can still give: MemAvailable from /proc/meminfo (nil where it cannot be read).
/// Checked before large allocations, so a size that cannot fit is an error naming the estimate
/// instead of an abort inside the allocator.
public enum SystemMemory {
    public static func availableBytes() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
            let parts = line.split(separator: " ")
            if parts.count >= 2, let kb = Int(parts[1]) { return kb * 1024 }
        }
        return nil
    }

    /// "12.3 GB"
    public static func format(_ bytes: Double) -> String { String(format: "%.1f GB", bytes / 1e9) }
}
