#!/usr/bin/env bash
# The GPU figures of issue 18, one script, one invocation (run from anywhere):
#
#   bench/gpu_figures.sh                      # on a GPU machine: --device cuda, full sizes
#   bench/gpu_figures.sh --device cpu --quick # smoke run (tiny sizes; the figures are not the benchmark's)
#
# (a) SAE graph, GPT-2-small shape (12 layers, d_model 768, random weights), random 16k-latent TopK
#     SAEs on every resid_post, one random 64-token prompt, K = 1, all 12 layers measured
#     (bench/attribution.py --part b): seconds per prompt, target <= 2 s; peak memory.
# (b) Transcoder prompt graph of the same shape (random 16k-latent per-layer skip transcoders,
#     64-token prompts), mechgraph against circuit-tracer 0.5.0 on the same device in the same run
#     (bench/vs_circuit_tracer.py --size gpt2): wall-time ratio and peak GPU memory of each.
#     circuit-tracer lives in its own venv (bench/peer_venv.sh; CT_VENV overrides the path). A
#     machine without internet cannot build it: build it on a machine with internet and the same
#     Python/CUDA (bash bench/peer_venv.sh), copy the directory to the GPU machine and set CT_VENV
#     (it is GBs: the device tool's 64 MiB carry cannot take it). Without it, (b) runs mechgraph's
#     side alone and says so.
# (c) Edge-ablation curve against node-ablation curve on zoo:mt-small@final, 10 points
#     (bench/evaluate.py): time ratio, target <= 3; peak memory of each curve.
# (d) Peak memory: printed by each part (CUDA: torch.cuda.max_memory_allocated), plus the
#     attribution memory against SAE width (bench/attribution.py --part m, 16k vs 64k latents,
#     12 layers on a GPU) and the transcoder trace's memory estimate against its measured peak
#     (bench/trace_memory.py).
#
# Each part runs in its own process; a failing part prints its exit status and the rest go on.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
device=cuda
quick=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --device) device="$2"; shift 2 ;;
    --quick) quick=1; shift ;;
    *) echo "usage: $0 [--device cuda|cpu] [--quick]" >&2; exit 2 ;;
  esac
done
py="${PYTHON:-$root/.venv/bin/python}"
[[ -x "$py" ]] || py="$(command -v python3)"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
cd "$root"
status=0

part() {  # part NAME TIMEOUT_S CMD...: run one part, report its exit status and wall time
  local name="$1" limit="$2"; shift 2
  echo; echo "########## $name"; echo "# $*"
  local t0=$SECONDS
  timeout "$limit" "$@"
  local rc=$?
  echo "# $name: exit $rc, $((SECONDS - t0)) s wall"
  [[ $rc -eq 0 ]] || status=1
}

echo "gpu_figures: device $device, quick=$quick, $(date -u +%FT%TZ), $(git -C "$root" rev-parse --short HEAD 2>/dev/null)"
if [[ "$device" == cuda* ]]; then
  "$py" -c 'import torch, sys; ok = torch.cuda.is_available(); print("CUDA:", torch.cuda.get_device_name(0) if ok else "NOT AVAILABLE"); sys.exit(0 if ok else 1)' \
    || { echo "no CUDA device: run with --device cpu"; exit 1; }
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi

if [[ $quick -eq 1 ]]; then
  a_args=(--quick); m_args=(--quick); ev_args=(--examples 8 --points 3); ct_size=bench; tr_args=()
else
  a_args=(--layers 12 --seq 64 --steps 1 --d-sae 16384 --k 64); m_args=(); ev_args=(--points 10); ct_size=gpt2
  tr_args=(--repeat 3)
fi

# (a)
part "(a) SAE graph, GPT-2-small shape, 16k TopK SAEs, K = 1 (target <= 2 s/prompt)" 1800 \
  "$py" bench/attribution.py --part b --device "$device" "${a_args[@]}"

# (b)
ct_venv="${CT_VENV:-$here/out/ct-venv}"
if [[ -f "$ct_venv/.ct-0.5.0-installed" ]]; then
  part "(b) transcoder prompt graph, mechgraph vs circuit-tracer ($ct_size)" 1800 \
    env CT_VENV="$ct_venv" "$py" bench/vs_circuit_tracer.py --size "$ct_size" --kinds plt --prompts 1 --rounds 2 \
    --device "$device"
else
  echo; echo "########## (b) circuit-tracer half SKIPPED: no circuit-tracer venv at $ct_venv (this machine may have"
  echo "no internet to build it; build it elsewhere with bench/peer_venv.sh and set CT_VENV); mechgraph's side alone:"
  part "(b) transcoder prompt graph, mechgraph only ($ct_size)" 1800 \
    "$py" bench/vs_circuit_tracer.py --size "$ct_size" --kinds plt --prompts 1 --device "$device" --no-peer
fi

# (c)
part "(c) edge- vs node-ablation curve, zoo:mt-small@final (target ratio <= 3)" 1800 \
  "$py" bench/evaluate.py --device "$device" "${ev_args[@]}"

# (d)
part "(d) attribution memory vs SAE width (target working-memory ratio <= 1.3)" 1800 \
  "$py" bench/attribution.py --part m --device "$device" "${m_args[@]}"
part "(d) transcoder trace: memory estimate vs measured peak, zoo:mt-small@final" 600 \
  "$py" bench/trace_memory.py --device "$device" "${tr_args[@]}"

echo; echo "gpu_figures: done, $( [[ $status -eq 0 ]] && echo 'every part ran' || echo 'SOME PARTS FAILED (see exit lines)')"
exit $status
