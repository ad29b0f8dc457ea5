"""The peer's side of docs/PRECISION.md's quality question: does PyTorch's bf16 autocast end a run
at the same held-out loss as its fp32, on the data and recipe smol trains the demo config with?

It trains bench/torch_train.py's Llama at the demo shape with the demo's recipe, reading smol's
token shards the way `smol train` does: non-overlapping windows of seq_len + 1 tokens, the last
`validation_fraction` of each shard's windows held out, each sequence's source drawn by the mixture
weights, each source's windows in a fresh random order every epoch; AdamW (PyTorch's, decoupled
decay, none on the embeddings and norms), clipping at 1.0, the WSD schedule; held-out loss over
`eval_batches × micro_batch` windows spread evenly over the held-out set. Data order and
initialisation come from torch/NumPy's generators, not smol's, so compare bf16 against fp32 within
one framework, not step by step across them.

`--mode bf16` wraps the forward in `torch.autocast("cpu", torch.bfloat16)` (the loss is taken in fp32
on float logits, as smol does) over fp32 master weights and AdamW state: the mixed precision a
PyTorch user trains with. Writes one JSON line per evaluation to `--out`.

Usage: python3 bench/precision_peer.py --shards prose=data/shards/prose-00000.bin:0.75 \
           --shards code=data/shards/code-00000.bin:0.25 --steps 2000 --eval-every 100 \
           --seed 1234 --mode fp32|bf16 --out /tmp/peer-fp32.jsonl [--threads 2] [--compile]"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_train import llama  # noqa: E402

DEMO = dict(vocab=2048, hidden=256, layers=4, heads=4, kv=2, inter=688, theta=10000.0, batch=16, seq=256)


def read_shard(path):
    """The tokens of a smol token shard (docs/FORMATS.md)."""
    raw = open(path, "rb").read()
    if raw[:8] != b"SMOLSHRD":
        sys.exit(f"{path}: not a smol token shard")
    width = int.from_bytes(raw[12:16], "little")
    n = int.from_bytes(raw[16:24], "little")
    return np.frombuffer(raw, dtype=np.uint16 if width == 2 else np.uint32, count=n, offset=64).astype(np.int64)


def held_out_count(windows, fraction):
    """smol's heldOut(fraction:): the last round(n·fraction) windows, at least one, never all."""
    if fraction <= 0 or windows < 2:
        return 0
    return min(windows - 1, max(1, int(math.floor(windows * fraction + 0.5))))


def wsd(step, total, peak, warmup, decay_fraction):
    """smol's LRSchedule .wsd with a linear decay to zero (0-based step)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    decay = int(math.floor(total * decay_fraction + 0.5))
    start = total - decay
    if decay == 0 or step < start:
        return peak
    return peak * (1 - (step - start + 1) / decay)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shards", action="append", required=True, help="name=path:weight, once per source")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--eval-batches", type=int, default=4)
    ap.add_argument("--validation-fraction", type=float, default=0.05)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--decay-fraction", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--mode", choices=["fp32", "bf16"], required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="torch.compile the model: faster; fusing float ops changes the last bits against eager")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    import torch
    import torch.nn.functional as F
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    s, T, B = DEMO, DEMO["seq"], DEMO["batch"]

    weights, train, held = [], [], []
    for spec in a.shards:
        path, weight = spec.split("=", 1)[1].rsplit(":", 1)
        tokens = read_shard(path)
        n = (len(tokens) - 1) // T
        k = held_out_count(n, a.validation_fraction)
        windows = np.stack([tokens[w * T: w * T + T + 1] for w in range(n)])
        weights.append(float(weight))
        train.append(windows[: n - k]); held.append(windows[n - k:])
    held_all = np.concatenate(held)
    n_eval = min(len(held_all), a.eval_batches * B)
    eval_windows = held_all[[i * len(held_all) // n_eval for i in range(n_eval)]]
    p = np.array(weights) / sum(weights)
    order = [rng.permutation(len(t)) for t in train]
    offset = [0] * len(train)

    def next_batch():
        rows = []
        for _ in range(B):
            src = int(rng.choice(len(train), p=p))
            if offset[src] == len(train[src]):
                order[src] = rng.permutation(len(train[src])); offset[src] = 0
            rows.append(train[src][order[src][offset[src]]]); offset[src] += 1
        return torch.from_numpy(np.stack(rows))

    model = llama(s)
    decays = {n_: q.dim() > 1 and "emb" not in n_ for n_, q in model.named_parameters()}   # smol's no_decay: embeddings, norms
    decay = [q for n_, q in model.named_parameters() if decays[n_]]
    no_decay = [q for n_, q in model.named_parameters() if not decays[n_]]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    net = torch.compile(model) if a.compile else model

    def loss_of(batch):
        x, y = batch[:, :-1], batch[:, 1:]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.mode == "bf16"):
            logits = net(x)
        return F.cross_entropy(logits.float().reshape(-1, s["vocab"]), y.reshape(-1))

    def evaluate():
        total, count = 0.0, 0
        with torch.no_grad():
            for i in range(0, n_eval, B):
                chunk = torch.from_numpy(eval_windows[i: i + B])
                total += loss_of(chunk).item() * chunk.shape[0] * T; count += chunk.shape[0] * T
        return total / count

    out = open(a.out, "w")
    t0 = time.perf_counter()
    for step in range(a.steps):
        lr = wsd(step, a.steps, a.lr, a.warmup, a.decay_fraction)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss = loss_of(next_batch())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        done = step + 1
        if done % a.eval_every == 0 or done == a.steps:
            record = {"step": done, "loss": loss.item(), "val_loss": evaluate(), "lr": lr,
                      "seconds": round(time.perf_counter() - t0, 1), "mode": a.mode, "seed": a.seed}
            out.write(json.dumps(record) + "\n"); out.flush()
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
