import Foundation
import SmolTrainer

/// What a comparison puts on its x axis.
public enum XAxis: String, Sendable, CaseIterable {
    case tokens, steps, flops
}

/// Several runs' series of one metric set side by side: a table at matched x values (linear
/// interpolation inside each run's range) and an SVG plot, smoothed then downsampled, with the
/// raw line faint behind it.
public struct RunComparison {
    public struct Line: Sendable {
        public var name: String
        public var x: [Double]
        public var y: [Double]
        /// Optional band around the line (e.g. min and max over seeds), drawn shaded.
        public var lower: [Double]? = nil
        public var upper: [Double]? = nil
        public init(name: String, x: [Double], y: [Double], lower: [Double]? = nil, upper: [Double]? = nil) {
            self.name = name; self.x = x; self.y = y; self.lower = lower; self.upper = upper
        }
    }
    public let metric: String
    public let axis: XAxis
    public let lines: [Line]

    public init(store: RunStore, runs: [RunRecord], metric: String, axis: XAxis) throws {
        self.metric = metric
        self.axis = axis
        var lines: [Line] = []
        for r in runs {
            let points = try store.series(run: r.id, metric: metric)
            guard !points.isEmpty else {
                let known = try store.metricNames(run: r.id)
                throw RunStoreError("run \(r.id) (\(r.name)) has no metric '\(metric)' (it has: \(known.joined(separator: ", ")))")
            }
            let x: [Double] = points.map {
                switch axis {
                case .tokens: return Double($0.tokens)
                case .steps: return Double($0.step)
                case .flops: return Double($0.tokens) * r.flopsPerToken
                }
            }
            lines.append(Line(name: "\(r.id):\(r.name)", x: x, y: points.map(\.value)))
        }
        self.lines = lines
    }

    public init(metric: String, axis: XAxis, lines: [Line]) { self.metric = metric; self.axis = axis; self.lines = lines }

    /// The line's y at x (nil outside its range).
    public static func interpolate(_ line: Line, at x: Double) -> Double? { SmolTrainer.interpolate(xs: line.x, ys: line.y, at: x) }

    /// `count` x values evenly spaced over the range all runs cover.
    public func matchedX(count: Int) -> [Double] {
        let lo = lines.map { $0.x.first! }.max()!, hi = lines.map { $0.x.last! }.min()!
        guard hi > lo, count > 1 else { return [lo] }
        return (0..<count).map { lo + (hi - lo) * Double($0) / Double(count - 1) }
    }

    /// Rows of (x, value of each run) at the matched x values.
    public func table(rows: Int) -> [(x: Double, values: [Double?])] {
        matchedX(count: rows).map { x in (x, lines.map { RunComparison.interpolate($0, at: x) }) }
    }

    /// TensorBoard's smoothing: an exponential moving average, debiased at the start.
    public static func smooth(_ y: [Double], weight: Double) -> [Double] {
        var last = 0.0, out: [Double] = []
        out.reserveCapacity(y.count)
        for (i, v) in y.enumerated() {
            last = last * weight + (1 - weight) * v
            out.append(weight == 0 ? v : last / (1 - pow(weight, Double(i + 1))))
        }
        return out
    }

    /// Every k-th index so at most `maxPoints` remain, the last always kept.
    public static func downsample(count n: Int, maxPoints: Int) -> [Int] {
        guard n > maxPoints, maxPoints > 1 else { return Array(0..<n) }
        let stride = Int((Double(n) / Double(maxPoints)).rounded(.up))
        var idx = Array(Swift.stride(from: 0, to: n, by: stride))
        if idx.last != n - 1 { idx.append(n - 1) }
        return idx
    }

    public func svg(smoothing: Double = 0.6, maxPoints: Int = 400, width: Double = 800, height: Double = 450, title: String? = nil) -> String {
        let left = 70.0, right = 40.0, top = 40.0, bottom = 50.0
        let pw = width - left - right, ph = height - top - bottom
        let xs = lines.flatMap(\.x), ys = (lines.flatMap(\.y) + lines.flatMap { ($0.lower ?? []) + ($0.upper ?? []) }).filter(\.isFinite)
        let xMin = xs.min() ?? 0, xMax = max(xs.max() ?? 1, (xs.min() ?? 0) + 1e-12)
        var yMin = ys.min() ?? 0, yMax = ys.max() ?? 1
        if yMax - yMin < 1e-12 { yMin -= 0.5; yMax += 0.5 }
        let pad = (yMax - yMin) * 0.05
        yMin -= pad; yMax += pad
        func px(_ x: Double) -> Double { left + (x - xMin) / (xMax - xMin) * pw }
        func py(_ y: Double) -> Double { top + (yMax - y) / (yMax - yMin) * ph }
        func f(_ v: Double) -> String { String(format: "%.2f", v) }
        func label(_ v: Double) -> String { abs(v) >= 1e4 || (abs(v) < 1e-2 && v != 0) ? String(format: "%.3g", v) : String(format: "%.4g", v) }
        let colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]
        var s = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(f(width / 2))" y="20" text-anchor="middle" font-size="14">\(escape(title ?? "\(metric) vs \(axis.rawValue)"))</text>
        <g id="plot" data-x-min="\(xMin)" data-x-max="\(xMax)" data-y-min="\(yMin)" data-y-max="\(yMax)" data-left="\(left)" data-top="\(top)" data-width="\(pw)" data-height="\(ph)">
        <rect x="\(f(left))" y="\(f(top))" width="\(f(pw))" height="\(f(ph))" fill="none" stroke="#888"/>

        """
        for i in 0...4 {
            let xv = xMin + (xMax - xMin) * Double(i) / 4, yv = yMin + (yMax - yMin) * Double(i) / 4
            s += "<line x1=\"\(f(px(xv)))\" y1=\"\(f(top + ph))\" x2=\"\(f(px(xv)))\" y2=\"\(f(top + ph + 5))\" stroke=\"#888\"/>"
            s += "<text x=\"\(f(px(xv)))\" y=\"\(f(top + ph + 18))\" text-anchor=\"middle\">\(label(xv))</text>\n"
            s += "<line x1=\"\(f(left - 5))\" y1=\"\(f(py(yv)))\" x2=\"\(f(left + pw))\" y2=\"\(f(py(yv)))\" stroke=\"#eee\"/>"
            s += "<text x=\"\(f(left - 8))\" y=\"\(f(py(yv) + 4))\" text-anchor=\"end\">\(label(yv))</text>\n"
        }
        s += "<text x=\"\(f(left + pw / 2))\" y=\"\(f(height - 8))\" text-anchor=\"middle\">\(axis.rawValue)</text>\n"
        for (i, line) in lines.enumerated() {
            let color = colors[i % colors.count]
            let finite = line.y.indices.filter { line.y[$0].isFinite }
            let x = finite.map { line.x[$0] }, y = finite.map { line.y[$0] }
            let smoothed = RunComparison.smooth(y, weight: smoothing)      // smooth first, then downsample
            let keep = RunComparison.downsample(count: y.count, maxPoints: maxPoints)
            let raw = keep.map { "\(f(px(x[$0]))),\(f(py(y[$0])))" }.joined(separator: " ")
            let sm = keep.map { "\(f(px(x[$0]))),\(f(py(smoothed[$0])))" }.joined(separator: " ")
            s += "<g class=\"run\" data-run=\"\(escape(line.name))\">\n"
            if let lo = line.lower, let hi = line.upper, lo.count == line.x.count, hi.count == line.x.count {
                let top = line.x.indices.map { "\(f(px(line.x[$0]))),\(f(py(hi[$0])))" }
                let bottom = line.x.indices.reversed().map { "\(f(px(line.x[$0]))),\(f(py(lo[$0])))" }
                s += "<polygon class=\"band\" fill=\"\(color)\" fill-opacity=\"0.15\" stroke=\"none\" points=\"\((top + bottom).joined(separator: " "))\"/>\n"
            }
            s += "<polyline class=\"raw\" fill=\"none\" stroke=\"\(color)\" stroke-opacity=\"0.25\" stroke-width=\"1\" points=\"\(raw)\"/>\n"
            s += "<polyline class=\"smoothed\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(sm)\"/>\n"
            s += "<text x=\"\(f(left + pw - 10))\" y=\"\(f(top + 16 + 16 * Double(i)))\" text-anchor=\"end\" fill=\"\(color)\">\(escape(line.name))</text>\n"
            s += "</g>\n"
        }
        s += "</g>\n</svg>\n"
        return s
    }

    func escape(_ t: String) -> String {
        t.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
