import Foundation

/// The CPU's feature flags as Linux lists them: the `flags` line of /proc/cpuinfo. The kernel lists
/// AVX-512 there only when it also enabled the registers' state, so a listed flag is usable.
public enum CPUFlags {
    /// The flags as a set (empty where /proc/cpuinfo has none, e.g. not Linux).
    public static func current() -> Set<Substring> {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return [] }
        return Set(line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == ":" }))
    }
}
