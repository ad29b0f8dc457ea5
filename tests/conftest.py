import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Trainings started by the tests record into a store of their own, never the checkout's .smol/runs.sqlite.
if "SMOL_STORE" not in os.environ:
    import tempfile
    os.environ["SMOL_STORE"] = str(Path(tempfile.mkdtemp(prefix="smol-test-store-")) / "runs.sqlite")


def smol_binary():
    env = os.environ.get("SMOL_BIN")
    if env:
        return env
    return str(ROOT / ".build" / "release" / "smol")


@pytest.fixture(scope="session")
def smol():
    path = smol_binary()
    if not os.path.exists(path):
        raise RuntimeError(f"{path} not built: run `swift build -c release` first")

    def run(*args, check=True, env=None, unset=(), timeout=600, cwd=None):
        e = {k: v for k, v in os.environ.items() if k not in unset}
        if env:
            e.update(env)
        r = subprocess.run([path, *map(str, args)], capture_output=True, text=True, env=e, timeout=timeout,
                           cwd=cwd or ROOT)
        if check and r.returncode != 0:
            raise AssertionError(f"smol {' '.join(map(str, args))} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r
    return run


def kill_at_checkpoint(args, out, step):
    """Starts `smol ARGS`, SIGKILLs it once OUT's checkpoint of `step` exists, and checks that it died by the kill."""
    import signal
    import time
    p = subprocess.Popen([smol_binary(), *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (Path(out) / "checkpoints" / f"step_{step:08d}").exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert p.returncode == -signal.SIGKILL, "the run finished before it could be killed"


# A small model on the bundled corpus, shared by the training, run-store and dashboard tests.
SMALL = """
model:
  vocab_size: 264
  hidden_size: 64
  num_hidden_layers: 2
  num_attention_heads: 4
  num_key_value_heads: 2
  intermediate_size: 128
  max_position_embeddings: 64
  no_rope_layer_interval: 2
  intra_document_masking: true
optimizer: {lr: 3.0e-3, weight_decay: 0.1, grad_clip: 1.0}
schedule: {type: wsd, warmup_steps: 3, decay_fraction: 0.25}
data:
  train: [SHARDS/prose.bin, SHARDS/code.bin]
  validation_fraction: 0.02
training:
  seq_len: 64
  micro_batch: 4
  tokens_per_batch: 512
  steps: 24
  eval_every: 8
  eval_batches: 2
  checkpoint_every: 5
  keep_checkpoints: 2
  seed: 11
  peak_gflops: 100
  sample_tokens: 0
"""


@pytest.fixture(scope="module")
def shards(smol, tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    smol("data", "prepare", ROOT / "data/corpus/prose.txt", "--out", d / "prose.bin")
    smol("data", "prepare", ROOT / "data/corpus/code.txt", "--delimiter", "<|endoftext|>", "--out", d / "code.bin")
    return d


@pytest.fixture
def config(shards, tmp_path):
    p = tmp_path / "small.yaml"
    p.write_text(SMALL.replace("SHARDS", str(shards)))
    return p
