import Foundation

/// y at x on the polyline through (xs[i], ys[i]) (xs ascending), by linear interpolation between
/// the neighbouring points; nil outside [xs.first, xs.last]. Serves the baseline guard, run
/// comparisons and ablation curves alike.
public func interpolate(xs: [Double], ys: [Double], at x: Double) -> Double? {
    guard let first = xs.first, let last = xs.last, x >= first, x <= last,
          let hi = xs.firstIndex(where: { $0 >= x }) else { return nil }
    if xs[hi] == x || hi == 0 { return ys[hi] }
    let t = (x - xs[hi - 1]) / (xs[hi] - xs[hi - 1])
    return ys[hi - 1] + t * (ys[hi] - ys[hi - 1])
}

/// Whether lower values of a metric are better: training and held-out losses (loss, val_loss,
/// val_loss/SOURCE) and perplexity-style metrics (word/byte perplexity, bits per byte); scores
/// such as task/acc_norm are higher-is-better.
public func metricLowerIsBetter(_ name: String) -> Bool {
    let parts = name.split(separator: "/")
    guard let first = parts.first, let last = parts.last else { return false }
    return first.hasSuffix("loss") || last.contains("perplexity") || last == "bits_per_byte"
}
