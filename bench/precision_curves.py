"""Training-loss and held-out-loss curves of two runs of one config (fp32 and bf16), as an SVG
and a Markdown table. The runs come from `training.precision` set each way, e.g.
  SMOL_DEMO_OUT=runs/demo-fp32 bash scripts/demo.sh --no-store --no-samples
  SMOL_DEMO_OUT=runs/demo-bf16 bash scripts/demo.sh --set training.precision=bf16 --no-store --no-samples
(add --set training.steps=2000 --set training.eval_every=100 to both for the issue's 2,000 steps)
  python3 bench/precision_curves.py runs/demo-fp32 runs/demo-bf16 --svg docs/img/precision-demo.svg
"""
import argparse
import json
from pathlib import Path


def read(run):
    rows = [json.loads(l) for l in (Path(run) / "metrics.jsonl").read_text().splitlines()]
    return ([(r["step"], r["loss"]) for r in rows if r["kind"] == "train"],
            [(r["step"], r["val_loss"]) for r in rows if r["kind"] == "eval"])


def smooth(points, beta=0.9):
    out, avg = [], 0.0
    for i, (x, y) in enumerate(points):
        avg = beta * avg + (1 - beta) * y
        out.append((x, avg / (1 - beta ** (i + 1))))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("fp32")
    ap.add_argument("bf16")
    ap.add_argument("--svg", required=True)
    a = ap.parse_args()
    runs = {"fp32": read(a.fp32), "bf16": read(a.bf16)}
    colours = {"fp32": "#1f77b4", "bf16": "#d62728"}
    xs = [s for r in runs.values() for s, _ in r[0]]
    ys = [v for r in runs.values() for _, v in r[0] + r[1]]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    W, H, M = 640, 360, 50
    px = lambda x: M + (x - x0) / (x1 - x0) * (W - 2 * M)
    py = lambda y: H - M - (y - y0) / (y1 - y0) * (H - 2 * M)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
             f'<rect width="{W}" height="{H}" fill="white"/>',
             f'<line x1="{M}" y1="{H - M}" x2="{W - M}" y2="{H - M}" stroke="black"/><line x1="{M}" y1="{M}" x2="{M}" y2="{H - M}" stroke="black"/>',
             f'<text x="{W / 2}" y="{H - 12}" text-anchor="middle">step</text>',
             f'<text x="14" y="{H / 2}" transform="rotate(-90 14 {H / 2})" text-anchor="middle">loss (train, smoothed; held-out: dots)</text>']
    for k in range(5):
        y = y0 + (y1 - y0) * k / 4
        parts.append(f'<text x="{M - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.2f}</text>')
        s = x0 + (x1 - x0) * k / 4
        parts.append(f'<text x="{px(s):.1f}" y="{H - M + 16}" text-anchor="middle">{s:.0f}</text>')
    for i, (name, (train, val)) in enumerate(runs.items()):
        c = colours[name]
        raw = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in train)
        parts.append(f'<polyline points="{raw}" fill="none" stroke="{c}" stroke-opacity="0.2"/>')
        pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in smooth(train))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{c}" stroke-width="2"/>')
        for x, y in val:
            parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="4" fill="{c}"/>')
        parts.append(f'<text x="{W - M - 60}" y="{M + 16 * i}" fill="{c}">{name}</text>')
    parts.append("</svg>")
    Path(a.svg).write_text("\n".join(parts) + "\n")
    print("| step | fp32 held-out | bf16 held-out | bf16 / fp32 |\n|---|---|---|---|")
    for (s, f), (_, b) in zip(runs["fp32"][1], runs["bf16"][1]):
        print(f"| {s} | {f:.4f} | {b:.4f} | {b / f:.4f} |")
    sf, sb = dict(smooth(runs["fp32"][0])), dict(smooth(runs["bf16"][0]))
    print("\n| step | fp32 train (smoothed) | bf16 train (smoothed) |\n|---|---|---|")
    steps = sorted(sf)
    picked = steps[::max(1, len(steps) // 8)]
    for s in picked + ([steps[-1]] if picked[-1] != steps[-1] else []):
        print(f"| {s} | {sf[s]:.4f} | {sb.get(s, float('nan')):.4f} |")


if __name__ == "__main__":
    main()
