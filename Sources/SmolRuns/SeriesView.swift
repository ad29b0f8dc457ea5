import Foundation
import GRDB

/// One metric of one run as a plot needs it: every point when the range holds at most
/// `maxPoints`, otherwise `maxPoints` equal-width step buckets, each its mean with its min and max
/// (so a spike survives the downsampling), computed by SQLite over the (run, name, step) index. A
/// 4.7M-step run answers ~2,000 points, and zooming into a range gives that range at full
/// resolution once it holds few enough points.
public struct SeriesView: Codable, Sendable, Equatable {
    public struct Point: Codable, Sendable, Equatable {
        /// Raw points: the point. Buckets: the mean step, tokens and value of the bucket's points.
        public var step: Double
        public var tokens: Double
        public var value: Double?
        /// Buckets only.
        public var min: Double?
        public var max: Double?
        public var n: Int?
    }
    public var metric: String
    /// Points in [from, to] in the store.
    public var total: Int
    public var from: Int?
    public var to: Int?
    public var downsampled: Bool
    public var points: [Point]
}

extension RunStore {
    /// Where a metric lives: the training metrics, or an evaluation ("task/metric").
    private func seriesSource(_ db: Database, run: Int64, metric: String) throws -> (table: String, where_: String, args: [DatabaseValueConvertible]) {
        if try Int.fetchOne(db, sql: "SELECT 1 FROM metric WHERE run_id = ? AND name = ? LIMIT 1", arguments: [run, metric]) != nil {
            return ("metric", "run_id = ? AND name = ?", [run, metric])
        }
        if let slash = metric.firstIndex(of: "/") {
            return ("eval_result", "run_id = ? AND task = ? AND metric = ?", [run, String(metric[..<slash]), String(metric[metric.index(after: slash)...])])
        }
        return ("metric", "run_id = ? AND name = ?", [run, metric])
    }

    public func seriesView(run: Int64, metric: String, from: Int? = nil, to: Int? = nil, maxPoints: Int = 2000) throws -> SeriesView {
        precondition(maxPoints >= 2)
        return try db.read { db in
            let (table, where_, base) = try seriesSource(db, run: run, metric: metric)
            let range = " AND step >= ? AND step <= ?"
            let lo0 = from ?? Int.min / 4, hi0 = to ?? Int.max / 4
            let args: StatementArguments = StatementArguments(base + [lo0, hi0] as [DatabaseValueConvertible])
            let row = try Row.fetchOne(db, sql: "SELECT COUNT(*) AS n, MIN(step) AS lo, MAX(step) AS hi FROM \(table) WHERE \(where_)\(range)", arguments: args)!
            let total: Int = row["n"]
            var view = SeriesView(metric: metric, total: total, from: from, to: to, downsampled: false, points: [])
            guard total > 0, let lo: Int = row["lo"], let hi: Int = row["hi"] else { return view }
            if total <= maxPoints {
                view.points = try Row.fetchAll(db, sql: "SELECT step, tokens, value FROM \(table) WHERE \(where_)\(range) ORDER BY step", arguments: args).map {
                    SeriesView.Point(step: Double($0["step"] as Int), tokens: Double($0["tokens"] as Int), value: $0["value"])
                }
                return view
            }
            // Bucket b holds steps with (step − lo) · B / (hi − lo + 1) = b: B equal-width step ranges.
            let width = hi - lo + 1
            view.downsampled = true
            view.points = try Row.fetchAll(db, sql: """
                SELECT (step - ?) * ? / ? AS b, AVG(step) AS step, AVG(tokens) AS tokens, AVG(value) AS value,
                       MIN(value) AS lo, MAX(value) AS hi, COUNT(*) AS n
                FROM \(table) WHERE \(where_)\(range) GROUP BY b ORDER BY b
                """, arguments: StatementArguments([lo, maxPoints, width] as [DatabaseValueConvertible]) + args).map {
                SeriesView.Point(step: $0["step"], tokens: $0["tokens"], value: $0["value"], min: $0["lo"], max: $0["hi"], n: $0["n"])
            }
            return view
        }
    }

    public static let seriesCSVHeader = "step,tokens,value\n"

    /// Every point of a metric in [from, to] as CSV (step,tokens,value): the raw series, for export.
    public func seriesCSV(run: Int64, metric: String, from: Int? = nil, to: Int? = nil) throws -> String {
        try db.read { db in
            let (table, where_, base) = try seriesSource(db, run: run, metric: metric)
            var out = RunStore.seriesCSVHeader
            let rows = try Row.fetchCursor(db, sql: "SELECT step, tokens, value FROM \(table) WHERE \(where_) AND step >= ? AND step <= ? ORDER BY step",
                                           arguments: StatementArguments(base + [from ?? Int.min / 4, to ?? Int.max / 4] as [DatabaseValueConvertible]))
            while let r = try rows.next() {
                let v: Double? = r["value"]
                out += "\(r["step"] as Int),\(r["tokens"] as Int),\(v.map { "\($0)" } ?? "")\n"
            }
            return out
        }
    }
}
