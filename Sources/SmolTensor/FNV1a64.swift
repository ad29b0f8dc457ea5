import Foundation

/// FNV-1a 64, fed in pieces: the project's content fingerprint (manifests, caches, weights). Not
/// cryptographic: it tells versions apart, it does not resist forgery.
public struct FNV1a64 {
    public private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325
    public init() {}

    public mutating func add(_ bytes: UnsafeRawBufferPointer) {
        var h = value
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        value = h
    }
    public mutating func add(_ bytes: [UInt8]) { bytes.withUnsafeBytes { add($0) } }
    public mutating func add(_ data: Data) { data.withUnsafeBytes { add($0) } }
    public mutating func add(_ n: Int) { withUnsafeBytes(of: Int64(n).littleEndian) { add($0) } }
    /// 32-bit words at a time (a float buffer's bit patterns): four times fewer steps than bytes.
    public mutating func add(words: UnsafePointer<Float>, count: Int) {
        var h = value
        words.withMemoryRebound(to: UInt32.self, capacity: count) { w in
            for i in 0..<count { h = (h ^ UInt64(w[i])) &* 0x100_0000_01b3 }
        }
        value = h
    }
    public var hex: String { String(format: "%016llx", value) }
}
