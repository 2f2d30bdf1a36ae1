#!/usr/bin/env bash
# Build circuit-tracer 0.5.0 in its own virtualenv (bench/out/ct-venv), never in .venv:
# it pins transformers<=4.57.3, which mechgraph's environment does not. torch is pinned to
# the version mechgraph's .venv has, so both tools run the same kernels (and pip reuses the
# wheel it already has in its cache). Idempotent: a finished venv is left as it is.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${CT_VENV:-$here/out/ct-venv}"
python="${PYTHON:-python3}"
main_python="${MECHGRAPH_PYTHON:-$here/../.venv/bin/python}"
stamp="$venv/.ct-0.5.0-installed"
if [[ -f "$stamp" ]]; then echo "$venv"; exit 0; fi
torch_pin=""
if [[ -x "$main_python" ]]; then
  torch_pin="torch==$("$main_python" -c 'import torch; print(torch.__version__.split("+")[0])')"
fi
mkdir -p "$(dirname "$venv")"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip >&2
"$venv/bin/python" -m pip install -q "circuit-tracer==0.5.0" $torch_pin >&2
touch "$stamp"
echo "$venv"
