"""Partial credit for the demo's needle answers (docs/LONG_CONTEXT.md), per context length, before
and after the context stage: the share of answers whose first number is exactly the value (stricter
than RULER's substring match), of the value's digits in place, and of right first digits."""
import json, re
for name in ("before", "after"):
    ds = [json.loads(l) for l in open(f"work/{name}/details/needle_demo.jsonl")]
    out = []
    for L in sorted({d["needle_length"] for d in ds}):
        sel = [d for d in ds if d["needle_length"] == L]
        def number(d):
            m = re.search(r"\d+", d["prediction"]); return m.group(0) if m else ""
        def exact(d): return number(d) == d["answers"][0]
        def digits(d):
            p, a = number(d), d["answers"][0]
            return sum(1 for i in range(len(a)) if i < len(p) and p[i] == a[i]) / len(a)
        def first(d): return number(d)[:1] == d["answers"][0][0]
        out.append(f"{L}: first number exact {sum(map(exact, sel)) / len(sel):.3f}, digits in place "
                   f"{sum(map(digits, sel)) / len(sel):.3f}, first digit {sum(map(first, sel)) / len(sel):.3f}")
    print(name, "; ".join(out))
