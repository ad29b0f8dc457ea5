/// A counter-based random stream. Its key is derived from (seed, purpose, coordinates), and each
/// value is a pure function of (key, counter), so two ranks or two tensors can never share a stream
/// by accident (the SmolLM3 tensor-parallel restart came from ranks sharing one seed), and a
/// stream's position is one integer that a checkpoint can save.
public struct RandomStream: Sendable, Equatable {
    public let key: UInt64
    public var counter: UInt64

    public init(seed: UInt64, purpose: String, coordinates: [Int] = [], counter: UInt64 = 0) {
        var h = RandomStream.mix(seed ^ 0x5349_4D4F_4C54_5241)   // "SMOLTRA"
        for byte in purpose.utf8 { h = RandomStream.mix(h ^ UInt64(byte)) }
        h = RandomStream.mix(h ^ 0xFF)                            // separates purpose from coordinates
        for c in coordinates { h = RandomStream.mix(h ^ UInt64(bitPattern: Int64(c))) }
        key = h
        self.counter = counter
    }

    public init(key: UInt64, counter: UInt64) { self.key = key; self.counter = counter }

    /// SplitMix64's finaliser: a bijective avalanche of 64 bits.
    @inline(__always)
    public static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    @inline(__always)
    public mutating func nextUInt64() -> UInt64 {
        let v = RandomStream.mix(key ^ RandomStream.mix(counter))
        counter &+= 1
        return v
    }

    /// Uniform in [0, 1) with 24 bits of precision.
    @inline(__always)
    public mutating func nextFloat() -> Float { Float(nextUInt64() >> 40) * (1.0 / 16_777_216.0) }

    /// Uniform in [0, 1) with 53 bits of precision.
    @inline(__always)
    public mutating func nextDouble() -> Double { Double(nextUInt64() >> 11) * (1.0 / 9_007_199_254_740_992.0) }

    /// Uniform integer in 0..<n (Lemire's multiply-shift; bias below 2^-32 for n < 2^32).
    @inline(__always)
    public mutating func nextInt(below n: Int) -> Int {
        precondition(n > 0)
        return Int(UInt64(n).multipliedFullWidth(by: nextUInt64()).high)
    }

    /// Standard normal by Box-Muller (one value per two draws, so the position stays simple).
    @inline(__always)
    public mutating func nextNormal() -> Float {
        let u1 = max(nextDouble(), 1e-300), u2 = nextDouble()
        return Float((-2 * _log(u1)).squareRoot() * _cos(2 * Double.pi * u2))
    }
}

#if canImport(Glibc)
import Glibc
@inline(__always) func _log(_ x: Double) -> Double { Glibc.log(x) }
@inline(__always) func _cos(_ x: Double) -> Double { Glibc.cos(x) }
#else
import Darwin
@inline(__always) func _log(_ x: Double) -> Double { Darwin.log(x) }
@inline(__always) func _cos(_ x: Double) -> Double { Darwin.cos(x) }
#endif
