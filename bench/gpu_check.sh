#!/usr/bin/env bash
# The CUDA path's proof in one run: the `cuda`-marked tests, then the GPU benchmarks (network alone 96/288/384
# fp32/TF32/fp16, render end to end on CUDA, everything-but-the-network with NVENC, serve latency), into ONE
# summary file. Installs nothing; every step has its own time limit so the whole stays under 8 minutes on a GPU
# machine. On a machine without CUDA it still passes: the cuda tests are skipped (listed with their reason) and
# every GPU-only benchmark is listed as skipped.
#
#   bench/gpu_check.sh [OUT_DIR]        # OUT_DIR default: $OUT if set, else ${TMPDIR:-/tmp}/gpu_check
#   PYTHON=/path/to/python bench/gpu_check.sh
#   STEPS="trained_faces cuda_tests render_cuda" bench/gpu_check.sh   # only these steps, in the usual order
#
# On a lent GPU machine without network: bench/gpu_prepare.sh here first (wheels, data), then the one-line
# command in its header there.
#
# trained_faces (issue 17): when .gpudata/set exists (`bench/trained_faces.py prepare`, here, with mediapipe),
# trains wav2lip96 twice for TRAIN_MINUTES (default 2.5) through `train-wav2lip` and writes the held-out
# drawings OUT_DIR/trained_{l1,gan}.npz for `bench/detail.py --generated`.
#
# Exit status: 0 when nothing failed (skips are not failures), 1 when a test or a benchmark failed or ran out
# of its time. The summary is OUT_DIR/gpu_check_summary.md; each step's full output is OUT_DIR/<step>.log.
set -u
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${1:-${OUT:-${TMPDIR:-/tmp}/gpu_check}}"
PY="${PYTHON:-$REPO/.venv/bin/python}"
SUMMARY="$OUT_DIR/gpu_check_summary.md"
export PYTHONUNBUFFERED=1
mkdir -p "$OUT_DIR"
cd "$REPO" || exit 1
STARTED=$(date +%s)
FAILED=()
SKIPPED=()

note() { printf '%s\n' "$*" >>"$SUMMARY"; }

# step NAME LIMIT_S CMD... : run with a time limit, log to OUT_DIR/NAME.log, put its tail in the summary
step() {
  local name="$1" limit="$2"
  shift 2
  local log="$OUT_DIR/$name.log" t0 rc
  t0=$(date +%s)
  echo "== $name (limit ${limit}s): $*" >&2
  timeout --kill-after=10 "$limit" "$@" >"$log" 2>&1
  rc=$?
  note ""
  note "## $name: $(if [ $rc -eq 0 ]; then echo ok; elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then echo "TIMED OUT after ${limit}s"; else echo "FAILED (exit $rc)"; fi), $(( $(date +%s) - t0 )) s"
  note ""
  note '```'
  note "\$ $*"
  tail -n "${TAIL_LINES:-40}" "$log" >>"$SUMMARY"
  note '```'
  [ $rc -eq 0 ] || FAILED+=("$name")
  return $rc
}

skip() { SKIPPED+=("$1: $2"); note ""; note "## $1: SKIPPED ($2)"; }

: >"$SUMMARY"
note "# gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ)"
note ""
note "- host: $(uname -n), $(nproc) cores, load avg $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"
note "- git: $(git rev-parse --short HEAD 2>/dev/null) ($(git status --porcelain 2>/dev/null | wc -l) changed files)"
GPU="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
note "- GPU: ${GPU:-none (no nvidia-smi or no device)}"
INFO=$("$PY" - <<'EOF' 2>&1
import torch
cuda = torch.cuda.is_available()
print(f"- torch {torch.__version__}, CUDA build {torch.version.cuda}, cuda available: {cuda}"
      + (f", {torch.cuda.get_device_name(0)}" if cuda else ""))
try:
    import onnxruntime as ort
    print(f"- onnxruntime {ort.__version__}: {', '.join(ort.get_available_providers())}")
except ImportError:
    print("- onnxruntime: not installed")
EOF
)
note "$INFO"
if "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  CUDA=1
else
  CUDA=0
  note "- **no CUDA here**: the cuda tests run as skipped and every GPU-only benchmark below is skipped"
fi

STEPS="${STEPS:-trained_faces cuda_tests network_alone render_cuda render_post_nvenc serve_latency}"
wanted() { [[ " $STEPS " == *" $1 "* ]]; }

# 0. a really trained generator for the detail benchmark (first: the one result no CPU can give)
if wanted trained_faces; then
  if [ "$CUDA" = 1 ] && [ -d "$REPO/.gpudata/set" ]; then
    TAIL_LINES=30 step trained_faces "$(awk "BEGIN { print int(${TRAIN_MINUTES:-2.5} * 60 + 120) }")" "$PY" bench/trained_faces.py gpu \
      --out "$OUT_DIR" --minutes "${TRAIN_MINUTES:-2.5}" --workers "$(( $(nproc) / 2 ))"
  else
    skip trained_faces "needs CUDA and .gpudata/set (bench/trained_faces.py prepare)"
  fi
fi

# 1. the cuda-marked tests (pytest's -m on the command line replaces the one in addopts)
wanted cuda_tests && TAIL_LINES=60 step cuda_tests 240 "$PY" -m pytest -m cuda -q -rA -p no:cacheprovider tests
if [ "$CUDA" = 0 ] && wanted cuda_tests; then
  # the proof that they were all skipped, one line each with the reason
  note ""
  note "cuda tests here: $(grep -Eo '[0-9]+ (passed|failed|skipped)' "$OUT_DIR/cuda_tests.log" | paste -sd, -) (all skipped without CUDA, each listed above with its reason)"
fi

# 2-5. benchmarks that need the GPU
if [ "$CUDA" = 1 ]; then
  wanted network_alone && step network_alone 150 "$PY" bench/gpu_bench.py --seconds 0.7
  wanted render_cuda && step render_cuda 120 "$PY" bench/render.py --device cuda --batch 16 --threads "$(nproc)" --part 1 --repeats 1 \
    --seconds 6
  wanted render_post_nvenc && step render_post_nvenc 90 "$PY" bench/render.py --part 2 --rounds 1 --presets ultrafast
  LATENCY_ARGS=(--threads 2)
  if "$PY" bench/latency.py --help 2>/dev/null | grep -q -- '--device'; then LATENCY_ARGS+=(--device cuda); fi
  wanted serve_latency && step serve_latency 120 "$PY" bench/latency.py "${LATENCY_ARGS[@]}"
else
  wanted network_alone && skip network_alone "CUDA-only: wav2lip96/288/384 fp32, TF32, fp16 at B=1/16/64 (bench/gpu_bench.py)"
  wanted render_post_nvenc && skip nvenc "CUDA-only: h264_nvenc vs libx264 at 1080p (bench/gpu_bench.py)"
  wanted render_cuda && skip render_cuda "CUDA-only: render end to end vs the network alone on CUDA (bench/render.py --device cuda)"
  wanted render_post_nvenc && skip render_post_nvenc "CUDA-only: compositing + encoding with NVENC (bench/render.py --part 2)"
  wanted serve_latency && skip serve_latency "CUDA-only here: serve's latency and distinct fps on the GPU (bench/latency.py; its CPU figures belong to docs/benchmarks.md)"
fi

note ""
note "## result"
note ""
note "- total: $(( $(date +%s) - STARTED )) s"
note "- failed or timed out: ${FAILED[*]:-none}"
if [ ${#SKIPPED[@]} -gt 0 ]; then
  note "- skipped:"
  for s in "${SKIPPED[@]}"; do note "  - $s"; done
fi
echo "gpu_check: summary in $SUMMARY (failed: ${FAILED[*]:-none}; skipped: ${#SKIPPED[@]} benchmarks)" >&2
[ ${#FAILED[@]} -eq 0 ]
