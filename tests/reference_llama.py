"""An independent NumPy (float64) Llama-family decoder with a hand-written backward pass and
AdamW, written for SmolTrain's tests. Hugging Face conventions: weights [out, in], RoPE rotates
halves (i, i + D/2), RMSNorm y = x / sqrt(mean(x^2) + eps) * w, SwiGLU MLP, optional tied head,
optional NoPE layers and intra-document masking (positions restart at each document)."""
import numpy as np


def uses_rope(cfg, layer):
    if cfg.get("no_rope_layers") is not None:
        return cfg["no_rope_layers"][layer] != 0
    n = cfg.get("no_rope_layer_interval")
    if n:
        return (layer + 1) % n != 0
    return True


def rope_tables(positions, head_dim, theta):
    half = head_dim // 2
    inv = theta ** (-2.0 * np.arange(half) / head_dim)
    ang = positions[:, None].astype(np.float64) * inv[None, :]
    return np.cos(ang), np.sin(ang)


def rope(x, cos, sin, inverse=False):
    # x [N, heads, D]
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    c, s = cos[:, None, :], sin[:, None, :]
    if inverse:
        s = -s
    return np.concatenate([a * c - b * s, b * c + a * s], axis=-1)


def rmsnorm(x, w, eps):
    rstd = 1.0 / np.sqrt((x * x).mean(-1, keepdims=True) + eps)
    return x * rstd * w, rstd


def rmsnorm_back(dy, x, w, rstd):
    c = x.shape[-1]
    g = dy * w
    dx = rstd * g - x * rstd ** 3 * (g * x).sum(-1, keepdims=True) / c
    dw = (dy * x * rstd).sum(0)
    return dx, dw


def round_bf16(x):
    """float32 -> bfloat16 -> float64, round to nearest even (finite inputs)."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16 << 16
    return u.astype(np.uint32).view(np.float32).astype(np.float64)


class Reference:
    def __init__(self, cfg, params, bf16=False, bf16_attention=None, bf16_head=None):
        """bf16: every matrix product (projections, head, attention's QKᵀ, PV and their gradients)
        takes its inputs rounded to bfloat16, as training.precision: bf16 does; softmax, norms and
        the loss stay exact. bf16_attention / bf16_head = False keep those products exact
        (inference's --prefill-precision bf16 rounds only the projections' inputs)."""
        self.cfg = cfg
        rounded = lambda a, b: round_bf16(a) @ round_bf16(b)
        pick = lambda flag: rounded if (bf16 if flag is None else flag) else np.matmul
        self.mm, self.mm_att, self.mm_head = pick(bf16), pick(bf16_attention), pick(bf16_head)
        self.kv_round = None
        self.p = {k: v.astype(np.float64) for k, v in params.items()}
        c = cfg
        self.H = c["num_attention_heads"]
        self.KV = c.get("num_key_value_heads", self.H)
        self.D = c.get("head_dim") or c["hidden_size"] // self.H
        self.L = c["num_hidden_layers"]
        self.eps = c.get("rms_norm_eps", 1e-5)
        self.tied = c.get("tie_word_embeddings", True)

    def head(self):
        return self.p["model.embed_tokens.weight"] if self.tied else self.p["lm_head.weight"]

    def masks(self, B, T, doc_start):
        """allowed[b, i, j] and RoPE positions [B*T]."""
        masking = self.cfg.get("intra_document_masking", False)
        ds = np.zeros((B, T), dtype=np.int64) if (doc_start is None or not masking) else np.asarray(doc_start).reshape(B, T)
        i = np.arange(T)[:, None]
        j = np.arange(T)[None, :]
        allowed = (j <= i)[None, :, :] & (j >= ds[:, :, None])
        pos = (np.arange(T)[None, :] - ds).reshape(-1)
        return allowed, pos

    def forward_backward(self, tokens, targets, B, T, doc_start=None, grad=True, weights=None, scale=None, head_loss=None):
        """Loss Σ wᵢ·CEᵢ · scale over counted targets (default: each weight 1, scale 1/count) and its
        gradient; with grad=False, (logits, loss, per-token CE). head_loss(logits) -> (loss, dlogits)
        replaces the cross-entropy (a distillation loss, say)."""
        p, H, KV, D, L, eps = self.p, self.H, self.KV, self.D, self.L, self.eps
        rep = H // KV
        N = B * T
        tokens = np.asarray(tokens)
        targets = np.asarray(targets)
        allowed, pos = self.masks(B, T, doc_start)
        cos, sin = rope_tables(pos, D, self.cfg.get("rope_theta", 10000.0))
        x = p["model.embed_tokens.weight"][tokens]
        cache = []
        for l in range(L):
            pre = f"model.layers.{l}."
            h1, r1 = rmsnorm(x, p[pre + "input_layernorm.weight"], eps)
            q = self.mm(h1, p[pre + "self_attn.q_proj.weight"].T).reshape(N, H, D)
            k = self.mm(h1, p[pre + "self_attn.k_proj.weight"].T).reshape(N, KV, D)
            v = self.mm(h1, p[pre + "self_attn.v_proj.weight"].T).reshape(N, KV, D)
            ur = uses_rope(self.cfg, l)
            if ur:
                q, k = rope(q, cos, sin), rope(k, cos, sin)
            if self.kv_round is not None:   # a KV cache that stores keys and values in another format
                k, v = self.kv_round(k), self.kv_round(v)
            qb = q.reshape(B, T, H, D).transpose(0, 2, 1, 3)                       # B H T D
            kb = np.repeat(k.reshape(B, T, KV, D).transpose(0, 2, 1, 3), rep, 1)   # B H T D
            vb = np.repeat(v.reshape(B, T, KV, D).transpose(0, 2, 1, 3), rep, 1)
            s = self.mm_att(qb, kb.transpose(0, 1, 3, 2)) / np.sqrt(D)
            s = np.where(allowed[:, None], s, -np.inf)
            s = s - s.max(-1, keepdims=True)
            P = np.exp(s)
            P /= P.sum(-1, keepdims=True)
            ob = self.mm_att(P, vb)
            att = ob.transpose(0, 2, 1, 3).reshape(N, H * D)
            mid = x + self.mm(att, p[pre + "self_attn.o_proj.weight"].T)
            h2, r2 = rmsnorm(mid, p[pre + "post_attention_layernorm.weight"], eps)
            g = self.mm(h2, p[pre + "mlp.gate_proj.weight"].T)
            u = self.mm(h2, p[pre + "mlp.up_proj.weight"].T)
            sg = 1 / (1 + np.exp(-g))
            act = g * sg * u
            out = mid + self.mm(act, p[pre + "mlp.down_proj.weight"].T)
            cache.append((x, h1, r1, qb, kb, vb, P, att, mid, h2, r2, g, u, sg, act, ur))
            x = out
        hf, rf = rmsnorm(x, p["model.norm.weight"], eps)
        W = self.head()
        logits = self.mm_head(hf, W.T)
        m = logits.max(-1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(logits - m).sum(-1))
        valid = targets >= 0
        count = valid.sum()
        losses = lse - logits[np.arange(N), np.where(valid, targets, 0)]
        w = np.ones(N) if weights is None else np.asarray(weights, np.float64)
        k = 1.0 / count if scale is None else scale
        loss = (losses * valid * w).sum() * k
        if not grad:
            return logits, loss, losses * valid
        grads = {k: np.zeros_like(v) for k, v in p.items()}
        if head_loss is not None:
            loss, dlogits = head_loss(logits)
        else:
            dlogits = np.exp(logits - lse[:, None])
            dlogits[np.arange(N), np.where(valid, targets, 0)] -= 1
            dlogits *= (valid * w * k)[:, None]
        headname = "model.embed_tokens.weight" if self.tied else "lm_head.weight"
        grads[headname] += self.mm_head(dlogits.T, hf)
        dhf = self.mm_head(dlogits, W)
        dx, dw = rmsnorm_back(dhf, x, p["model.norm.weight"], rf)
        grads["model.norm.weight"] += dw
        for l in reversed(range(L)):
            pre = f"model.layers.{l}."
            (xin, h1, r1, qb, kb, vb, P, att, mid, h2, r2, g, u, sg, act, ur) = cache[l]
            # MLP
            grads[pre + "mlp.down_proj.weight"] += self.mm(dx.T, act)
            dact = self.mm(dx, p[pre + "mlp.down_proj.weight"])
            dg = dact * u * sg * (1 + g * (1 - sg))
            du = dact * g * sg
            grads[pre + "mlp.gate_proj.weight"] += self.mm(dg.T, h2)
            grads[pre + "mlp.up_proj.weight"] += self.mm(du.T, h2)
            dh2 = self.mm(dg, p[pre + "mlp.gate_proj.weight"]) + self.mm(du, p[pre + "mlp.up_proj.weight"])
            dmid_n, dw2 = rmsnorm_back(dh2, mid, p[pre + "post_attention_layernorm.weight"], r2)
            grads[pre + "post_attention_layernorm.weight"] += dw2
            dmid = dx + dmid_n
            # attention
            grads[pre + "self_attn.o_proj.weight"] += self.mm(dmid.T, att)
            datt = self.mm(dmid, p[pre + "self_attn.o_proj.weight"])
            dob = datt.reshape(B, T, H, D).transpose(0, 2, 1, 3)
            dP = self.mm_att(dob, vb.transpose(0, 1, 3, 2))
            dvb = self.mm_att(P.transpose(0, 1, 3, 2), dob)
            dS = P * (dP - (dP * P).sum(-1, keepdims=True)) / np.sqrt(D)
            dqb = self.mm_att(dS, kb)
            dkb = self.mm_att(dS.transpose(0, 1, 3, 2), qb)
            dq = dqb.transpose(0, 2, 1, 3).reshape(N, H, D)
            dk = dkb.reshape(B, KV, rep, T, D).sum(2).transpose(0, 2, 1, 3).reshape(N, KV, D)
            dv = dvb.reshape(B, KV, rep, T, D).sum(2).transpose(0, 2, 1, 3).reshape(N, KV, D)
            if ur:
                dq, dk = rope(dq, cos, sin, inverse=True), rope(dk, cos, sin, inverse=True)
            dq, dk, dv = dq.reshape(N, -1), dk.reshape(N, -1), dv.reshape(N, -1)
            grads[pre + "self_attn.q_proj.weight"] += self.mm(dq.T, h1)
            grads[pre + "self_attn.k_proj.weight"] += self.mm(dk.T, h1)
            grads[pre + "self_attn.v_proj.weight"] += self.mm(dv.T, h1)
            dh1 = self.mm(dq, p[pre + "self_attn.q_proj.weight"]) + self.mm(dk, p[pre + "self_attn.k_proj.weight"]) + self.mm(dv, p[pre + "self_attn.v_proj.weight"])
            dxn, dw1 = rmsnorm_back(dh1, xin, p[pre + "input_layernorm.weight"], r1)
            grads[pre + "input_layernorm.weight"] += dw1
            dx = dmid + dxn
        np.add.at(grads["model.embed_tokens.weight"], tokens, dx)
        return logits, loss, grads


def adamw_step(params, grads, state, lr, opt, step):
    """PyTorch AdamW with global-norm clipping (clip / (norm + 1e-6)) and name-pattern decay exclusions."""
    import fnmatch
    norm = np.sqrt(sum((g * g).sum() for g in grads.values()))
    clip = opt.get("grad_clip", 1.0)
    scale = clip / (norm + 1e-6) if clip > 0 and norm > clip else 1.0
    b1, b2, eps, wd = opt["beta1"], opt["beta2"], opt["eps"], opt["weight_decay"]
    no_decay = opt.get("no_decay", ["*embed_tokens*", "*norm*"])
    for name in params:
        g = grads[name] * scale
        m, v = state.setdefault(name, (np.zeros_like(g), np.zeros_like(g)))
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        state[name] = (m, v)
        if not any(fnmatch.fnmatchcase(name, pat) for pat in no_decay):
            params[name] = params[name] * (1 - lr * wd)
        mhat = m / (1 - b1 ** step)
        vhat = v / (1 - b2 ** step)
        params[name] = params[name] - lr * mhat / (np.sqrt(vhat) + eps)
    return norm
