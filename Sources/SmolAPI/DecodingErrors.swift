import Foundation

/// A decoding error as one line naming the key: "missing key 'x'", "a.b: expected ...".
public func describeDecodingError(_ e: DecodingError) -> String {
    func path(_ p: [CodingKey]) -> String { p.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".") }
    switch e {
    case let .keyNotFound(k, ctx): return "missing key '\((ctx.codingPath + [k]).map(\.stringValue).joined(separator: "."))'"
    case let .typeMismatch(_, ctx), let .valueNotFound(_, ctx): return "\(path(ctx.codingPath)): \(ctx.debugDescription)"
    case let .dataCorrupted(ctx):
        if let inner = ctx.underlyingError, !(inner is DecodingError) { return "\(inner)" }   // Yams wraps errors thrown by init(from:)
        return ctx.codingPath.isEmpty ? "not valid JSON or YAML" : "\(path(ctx.codingPath)): \(ctx.debugDescription)"
    @unknown default: return "\(e)"
    }
}
