"""The peer: the same Llama shapes trained with PyTorch on CPU (AdamW, gradient clipping, fused
scaled-dot-product attention), timed the same way as `smol bench train` (median step after one
warm-up step). Prints one JSON object per shape. Each shape runs in a fresh process so that peak
RSS is its own.

Modes: `eager` (fp32), and `compile-bf16`, PyTorch's fastest CPU training path: the model under
`torch.compile` (Inductor) with `torch.autocast("cpu", torch.bfloat16)` around forward and loss,
fp32 master weights and AdamW state (what `training.precision: bf16` does in smol). Compilation
happens in warm-up steps that are not timed.

Usage: python3 bench/torch_train.py [--shape tiny|smollm2-135m|all] [--steps 3] [--threads 2] [--mode eager|compile-bf16]"""
import argparse
import json
import resource
import subprocess
import sys
import time

SHAPES = {
    "tiny": dict(vocab=8192, hidden=256, layers=6, heads=4, kv=2, inter=688, theta=10000.0, batch=16, seq=256),
    "smollm2-135m": dict(vocab=49152, hidden=576, layers=30, heads=9, kv=3, inter=1536, theta=100000.0, batch=4, seq=512),
}


def llama(s):
    """The Llama of shape `s` (a SHAPES entry): RMSNorm, RoPE, grouped-query attention through
    fused scaled-dot-product attention, SwiGLU, a head tied to the embeddings; matrices drawn from
    N(0, 0.02²) under the current torch seed, norm weights one (what smol does)."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    D = s["hidden"] // s["heads"]

    class RMSNorm(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(c))

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * self.weight

    inv = 1.0 / (s["theta"] ** (torch.arange(0, D, 2).float() / D))
    ang = torch.outer(torch.arange(s["seq"]).float(), inv)
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)

    def rope(x):
        x1, x2 = x[..., : D // 2], x[..., D // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            c, h, kv, f = s["hidden"], s["heads"], s["kv"], s["inter"]
            self.n1, self.n2 = RMSNorm(c), RMSNorm(c)
            self.q, self.k, self.v = nn.Linear(c, h * D, bias=False), nn.Linear(c, kv * D, bias=False), nn.Linear(c, kv * D, bias=False)
            self.o = nn.Linear(h * D, c, bias=False)
            self.g, self.u, self.d = nn.Linear(c, f, bias=False), nn.Linear(c, f, bias=False), nn.Linear(f, c, bias=False)

        def forward(self, x):
            B, T, _ = x.shape
            h = self.n1(x)
            q = rope(self.q(h).view(B, T, s["heads"], D).transpose(1, 2))
            k = rope(self.k(h).view(B, T, s["kv"], D).transpose(1, 2))
            v = self.v(h).view(B, T, s["kv"], D).transpose(1, 2)
            rep = s["heads"] // s["kv"]
            k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.o(a.transpose(1, 2).reshape(B, T, -1))
            h = self.n2(x)
            return x + self.d(F.silu(self.g(h)) * self.u(h))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(s["vocab"], s["hidden"])
            self.blocks = nn.ModuleList([Block() for _ in range(s["layers"])])
            self.norm = RMSNorm(s["hidden"])

        def forward(self, idx):
            x = self.emb(idx)
            for b in self.blocks:
                x = b(x)
            return self.norm(x) @ self.emb.weight.T   # tied head

    model = Model()
    for p in model.parameters():
        if p.dim() > 1:
            nn.init.normal_(p, std=0.02)
    return model


def run_one(name, steps, threads, mode):
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    s = SHAPES[name]
    D = s["hidden"] // s["heads"]
    model = llama(s)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    n_params = sum(p.numel() for p in model.parameters())
    tokens = torch.randint(0, s["vocab"], (s["batch"], s["seq"] + 1))
    x, y = tokens[:, :-1], tokens[:, 1:]
    if mode == "compile-bf16":
        compiled = torch.compile(model)

        def loss_of(x, y):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return F.cross_entropy(compiled(x).view(-1, s["vocab"]).float(), y.reshape(-1))
        warmup = 3   # the first calls compile forward and backward
    else:
        def loss_of(x, y):
            return F.cross_entropy(model(x).view(-1, s["vocab"]), y.reshape(-1))
        warmup = 1
    times = []
    for i in range(steps + warmup):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_of(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2]
    ntok = s["batch"] * s["seq"]
    L, H, T = s["layers"], s["heads"], s["seq"]
    flops = 6 * n_params + 12 * L * H * D * T
    print(json.dumps({"name": name, "peer": f"pytorch {torch.__version__} " + ("eager fp32" if mode == "eager" else "torch.compile + bf16 autocast"),
                      "mode": mode, "loss": loss.item(), "parameters": n_params,
                      "seconds_per_step": med, "tokens_per_s": ntok / med, "model_gflops": ntok / med * flops / 1e9,
                      "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "threads": threads}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="all")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mode", choices=["eager", "compile-bf16"], default="eager")
    ap.add_argument("--in-process", action="store_true")
    a = ap.parse_args()
    if a.in_process:
        run_one(a.shape, a.steps, a.threads, a.mode)
        return
    for name in (SHAPES if a.shape == "all" else [a.shape]):
        subprocess.run([sys.executable, __file__, "--shape", name, "--steps", str(a.steps), "--threads", str(a.threads), "--mode", a.mode, "--in-process"], check=True)


if __name__ == "__main__":
    main()
