import Foundation

/// A decoding error as one line naming the key: "missing key 'x'", "a.b: expected ...".
public func describeDecodingError(_ e: DecodingError) -> String {
    func path(_ p: [CodingKey]) -> String {
        p.enumerated().map { i, k in k.intValue.map { "[\($0)]" } ?? (i == 0 ? k.stringValue : "." + k.stringValue) }.joined()
    }
    switch e {
    case let .keyNotFound(k, ctx): return "missing key '\((ctx.codingPath + [k]).map(\.stringValue).joined(separator: "."))'"
    case let .typeMismatch(_, ctx), let .valueNotFound(_, ctx): return "\(path(ctx.codingPath)): \(ctx.debugDescription)"
    case let .dataCorrupted(ctx):
        if let inner = ctx.underlyingError, !(inner is DecodingError) { return "\(inner)" }   // Yams wraps errors thrown by init(from:)
        return ctx.codingPath.isEmpty ? "not valid JSON or YAML" : "\(path(ctx.codingPath)): \(ctx.debugDescription)"
    @unknown default: return "\(e)"
    }
}

/// The key a decoding error is about ("messages.0.content"), or nil for the document itself.
public func decodingErrorKey(_ e: DecodingError) -> String? {
    let path: [CodingKey]
    switch e {
    case let .keyNotFound(k, ctx): path = ctx.codingPath + [k]
    case let .typeMismatch(_, ctx), let .valueNotFound(_, ctx), let .dataCorrupted(ctx): path = ctx.codingPath
    @unknown default: return nil
    }
    return path.isEmpty ? nil : path.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
}

extension KeyedDecodingContainer {
    /// An integer field, with an error naming the key when the number is fractional or out of
    /// range (Foundation's decoder reports those as "not valid JSON" with no key).
    public func decodeIntegerIfPresent<T: FixedWidthInteger & Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        guard contains(key), try !decodeNil(forKey: key) else { return nil }
        if let v = try? decode(T.self, forKey: key) { return v }
        guard let d = try? decode(Double.self, forKey: key) else {
            throw DecodingError.typeMismatch(T.self, .init(codingPath: codingPath + [key], debugDescription: "expected an integer"))
        }
        guard d.rounded() == d, let v = T(exactly: d) else {
            throw DecodingError.dataCorrupted(.init(codingPath: codingPath + [key], debugDescription: "\(d) is not an integer in \(T.min)...\(T.max)"))
        }
        return v
    }
}
