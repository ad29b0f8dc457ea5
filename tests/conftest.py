import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


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

    def run(*args, check=True, env=None, timeout=600, cwd=None):
        e = dict(os.environ)
        if env:
            e.update(env)
        r = subprocess.run([path, *map(str, args)], capture_output=True, text=True, env=e, timeout=timeout,
                           cwd=cwd or ROOT)
        if check and r.returncode != 0:
            raise AssertionError(f"smol {' '.join(map(str, args))} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r
    return run
