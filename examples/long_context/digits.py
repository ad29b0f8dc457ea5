"""Partial credit for the demo's needle answers (docs/LONG_CONTEXT.md): the share of the 7 digits in
place and of right first digits, per context length, before and after the context stage."""
import json, re
for name in ("before", "after"):
    ds = [json.loads(l) for l in open(f"work/{name}/details/needle_demo.jsonl")]
    out = []
    for L in (128, 256, 512):
        sel = [d for d in ds if d["needle_length"] == L]
        def digits(d):
            m = re.search(r"\d+", d["prediction"]); p = m.group(0) if m else ""
            return sum(1 for i in range(7) if i < len(p) and p[i] == d["answers"][0][i]) / 7
        def first(d):
            m = re.search(r"\d", d["prediction"]); return bool(m) and m.group(0) == d["answers"][0][0]
        out.append(f"{L}: digits in place {sum(map(digits, sel)) / len(sel):.3f}, first digit {sum(map(first, sel)) / len(sel):.3f}")
    print(name, "; ".join(out))
