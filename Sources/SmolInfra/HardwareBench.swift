import Foundation
import SmolTensor

/// This machine's float32 peak derived from the CPU: cores × clock × SIMD lanes × 2 (FMA) × FMA units.
public struct CPUPeak: Encodable, Sendable {
    public let cores: Int
    public let clockGHz: Double
    public let clockSource: String
    public let lanes: Int
    public let fmaUnits: Int
    public var gflops: Double { Double(cores) * clockGHz * Double(lanes) * 2 * Double(fmaUnits) }
    public var derivation: String {
        String(format: "%d cores × %.3f GHz (%@) × %d float lanes (%@) × 2 (FMA) × %d FMA units = %.1f GFLOP/s",
               cores, clockGHz, clockSource, lanes, lanes == 16 ? "AVX-512" : lanes == 8 ? "AVX2" : "SSE", fmaUnits, gflops)
    }
    enum CodingKeys: String, CodingKey { case cores, clockGHz = "clock_ghz", clockSource = "clock_source", lanes, fmaUnits = "fma_units", gflops, derivation }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(cores, forKey: .cores); try c.encode(clockGHz, forKey: .clockGHz); try c.encode(clockSource, forKey: .clockSource)
        try c.encode(lanes, forKey: .lanes); try c.encode(fmaUnits, forKey: .fmaUnits); try c.encode(gflops, forKey: .gflops)
        try c.encode(derivation, forKey: .derivation)
    }

    /// Reads /proc/cpuinfo. The clock there can be the base clock of a VM; boost can exceed it, so
    /// a measured GEMM above 100% of this figure means the core runs faster than reported.
    public static func detect(clockGHz: Double? = nil, fmaUnits: Int = 2) -> CPUPeak {
        let info = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let flags = CPUFlags.current()
        let lanes = flags.contains("avx512f") ? 16 : (flags.contains("avx2") && flags.contains("fma") ? 8 : 4)
        var mhz = 0.0
        for line in info.split(separator: "\n") where line.hasPrefix("cpu MHz") {
            if let v = line.split(separator: ":").last.flatMap({ Double($0.trimmingCharacters(in: .whitespaces)) }) { mhz = max(mhz, v) }
        }
        let cores = ProcessInfo.processInfo.activeProcessorCount
        if let g = clockGHz { return CPUPeak(cores: cores, clockGHz: g, clockSource: "given", lanes: lanes, fmaUnits: fmaUnits) }
        return CPUPeak(cores: cores, clockGHz: mhz > 0 ? mhz / 1000 : 1, clockSource: mhz > 0 ? "/proc/cpuinfo" : "unknown",
                       lanes: lanes, fmaUnits: fmaUnits)
    }
}

public struct HardwareResult: Codable, Sendable {
    public let name: String
    public let value: Double
    public let unit: String
    public let percentOfTheoretical: Double?
    public let note: String
    enum CodingKeys: String, CodingKey { case name, value, unit, percentOfTheoretical = "percent_of_theoretical", note }
    public init(name: String, value: Double, unit: String, percentOfTheoretical: Double?, note: String) {
        self.name = name; self.value = value; self.unit = unit; self.percentOfTheoretical = percentOfTheoretical; self.note = note
    }
}

/// STREAM, GEMM and disk measurements.
public enum HardwareBench {
    /// STREAM kernels on Double arrays of `n` elements each (≥ 4 × the last-level cache), best of
    /// `repeats` after one untimed pass; bytes counted as STREAM does (no write-allocate).
    public static func stream(n: Int, repeats: Int = 10) -> [(name: String, mbps: Double)] {
        let a = UnsafeMutablePointer<Double>.allocate(capacity: n), b = UnsafeMutablePointer<Double>.allocate(capacity: n)
        let c = UnsafeMutablePointer<Double>.allocate(capacity: n)
        defer { a.deallocate(); b.deallocate(); c.deallocate() }
        Parallel.chunks(n) { _, r in for i in r { a[i] = 1; b[i] = 2; c[i] = 0 } }   // first touch by the worker that uses it
        let q = 3.0
        let kernels: [(String, Int, (Range<Int>) -> Void)] = [
            ("copy", 2, { r in for i in r { c[i] = a[i] } }),
            ("scale", 2, { r in for i in r { b[i] = q * c[i] } }),
            ("add", 3, { r in for i in r { c[i] = a[i] + b[i] } }),
            ("triad", 3, { r in for i in r { a[i] = b[i] + q * c[i] } }),
        ]
        var best = [Double](repeating: .infinity, count: kernels.count)
        for rep in 0...repeats {
            for (k, kernel) in kernels.enumerated() {
                let t0 = DispatchTime.now().uptimeNanoseconds
                Parallel.chunks(n) { _, r in kernel.2(r) }
                let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
                if rep > 0 { best[k] = min(best[k], dt) }
            }
        }
        return kernels.enumerated().map { (k, kernel) in (kernel.0, Double(kernel.1 * 8 * n) / best[k] / 1e6) }
    }

    /// Writes `bytes` to a file in `directory` in 8 MiB blocks and fsyncs (as a checkpoint does),
    /// then evicts it from the page cache and reads it back. Returns (write MB/s, read MB/s).
    public static func disk(directory: String, bytes: Int) throws -> (write: Double, read: Double) {
        let path = (directory as NSString).appendingPathComponent(".smol-disk-bench-\(getpid())")
        defer { unlink(path) }
        let block = 8 << 20
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: block, alignment: 4096)
        defer { buffer.deallocate() }
        memset(buffer, 0x5A, block)
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw NSError(domain: "smol", code: 1, userInfo: [NSLocalizedDescriptionKey: "\(path): cannot create: \(String(cString: strerror(errno)))"]) }
        let t0 = DispatchTime.now().uptimeNanoseconds
        var written = 0
        while written < bytes {
            let n = write(fd, buffer, min(block, bytes - written))
            if n <= 0 { close(fd); throw NSError(domain: "smol", code: 1, userInfo: [NSLocalizedDescriptionKey: "\(path): write failed: \(String(cString: strerror(errno)))"]) }
            written += n
        }
        fsync(fd)
        let tw = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
        posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))
        close(fd)
        let rfd = open(path, O_RDONLY)
        guard rfd >= 0 else { throw NSError(domain: "smol", code: 1, userInfo: [NSLocalizedDescriptionKey: "\(path): cannot reopen"]) }
        posix_fadvise(rfd, 0, 0, Int32(POSIX_FADV_DONTNEED))
        let t1 = DispatchTime.now().uptimeNanoseconds
        var read = 0
        while true { let n = Foundation.read(rfd, buffer, block); if n <= 0 { break }; read += n }
        let tr = Double(DispatchTime.now().uptimeNanoseconds - t1) * 1e-9
        close(rfd)
        return (Double(written) / tw / 1e6, Double(read) / tr / 1e6)
    }
}
