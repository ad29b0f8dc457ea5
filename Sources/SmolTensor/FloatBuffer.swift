import Foundation

/// A fixed-size, 64-byte-aligned float32 array. Kernels work on its raw pointer; the buffer
/// owns the memory so activations and gradients can be allocated once per (batch, sequence) shape.
public final class FloatBuffer {
    public let count: Int
    public let pointer: UnsafeMutablePointer<Float>

    public init(count: Int) {
        precondition(count >= 0, "FloatBuffer count must be non-negative")
        self.count = count
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        raw.initializeMemory(as: Float.self, repeating: 0, count: max(count, 1))
        pointer = raw.assumingMemoryBound(to: Float.self)
    }

    deinit { UnsafeMutableRawPointer(pointer).deallocate() }

    public func zero() { pointer.update(repeating: 0, count: count) }

    public subscript(i: Int) -> Float {
        get { pointer[i] }
        set { pointer[i] = newValue }
    }

    public var array: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }

    public func copy(from other: UnsafePointer<Float>, count n: Int, at offset: Int = 0) {
        precondition(offset + n <= count)
        (pointer + offset).update(from: other, count: n)
    }
}
