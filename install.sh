#!/usr/bin/env bash
# stream-wav2lip installer for Linux (Debian/Ubuntu). Idempotent: run it again at any time.
#
#   ./install.sh            runtime: system packages, .venv, torch, the project
#   ./install.sh --test     also what the tests need (OBS Studio, Xvfb, PulseAudio, sox, pytest...)
#
# Environment knobs:
#   PYTHON=/path/python3.x  interpreter for the venv (default: Debian's python3.11, which matches OBS's own Python)
#   TORCH_SPEC="torch==…"   torch requirement (default: torch==2.13.0; on a CUDA machine pick a CUDA build)
#   TORCH_INDEX_URL=…       extra index for torch (e.g. PyTorch's CPU-only wheel index on machines without a GPU)
#   SKIP_APT=1              do not touch system packages
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
WITH_TEST=0
for a in "$@"; do
  case "$a" in
    --test) WITH_TEST=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $a (see --help)" >&2; exit 2 ;;
  esac
done
say() { printf '\033[1m[install]\033[0m %s\n' "$*"; }

# ---------------------------------------------------------------- system packages
APT_RUNTIME=(ffmpeg espeak-ng libsndfile1 portaudio19-dev gcc python3-dev python3.11-venv)
APT_TEST=(obs-studio obs-plugins xvfb pulseaudio pulseaudio-utils sox xdotool alsa-utils gdb)  # gdb: backtraces if OBS crashes in a test
if [ "${SKIP_APT:-0}" != 1 ] && command -v apt-get >/dev/null; then
  want=("${APT_RUNTIME[@]}"); [ $WITH_TEST = 1 ] && want+=("${APT_TEST[@]}")
  missing=()
  for p in "${want[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" != 0 ] && SUDO="sudo"
    say "apt: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    say "apt: system packages already present"
  fi
fi

# ---------------------------------------------------------------- python + venv
pick_python() {
  if [ -n "${PYTHON:-}" ]; then echo "$PYTHON"; return; fi
  for c in /usr/bin/python3.11 python3.11 python3.12 python3.10 python3; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys, venv; assert (3,10) <= sys.version_info[:2] <= (3,12)' 2>/dev/null; then
      echo "$c"; return
    fi
  done
  echo "install.sh: need Python 3.10-3.12 (mediapipe 0.10.21 has no wheels for newer Pythons)" >&2; exit 1
}
PY=$(pick_python)
if [ ! -x .venv/bin/python ]; then
  say "venv: creating .venv with $PY ($("$PY" -V 2>&1))"
  "$PY" -m venv .venv
else
  say "venv: .venv exists ($(.venv/bin/python -V 2>&1))"
fi
VPY="$ROOT/.venv/bin/python"
"$VPY" -m pip install -q --upgrade pip setuptools wheel

# ---------------------------------------------------------------- torch
if ! "$VPY" -c 'import torch' 2>/dev/null; then
  spec="${TORCH_SPEC:-torch==2.13.0}"
  extra=(); [ -n "${TORCH_INDEX_URL:-}" ] && extra=(--extra-index-url "$TORCH_INDEX_URL")
  say "torch: installing $spec"
  "$VPY" -m pip install -q "${extra[@]}" "$spec"
else
  say "torch: $("$VPY" -c 'import torch; print(torch.__version__, "cuda" if torch.cuda.is_available() else "cpu")')"
fi

# ---------------------------------------------------------------- the project
extras="audio"; [ $WITH_TEST = 1 ] && extras="audio,test"
say "project: pip install -e .[$extras]"
if ! "$VPY" -m pip install -q -e ".[$extras]"; then
  say "project: PyAudio failed to build (portaudio19-dev missing?); installing without microphone support"
  "$VPY" -m pip install -q -e ".${extras/audio,/}" 2>/dev/null || "$VPY" -m pip install -q -e .
fi

# ---------------------------------------------------------------- report
"$VPY" -m stream_wav2lip doctor --brief || true
cat <<MSG

$(say "done.")
  Run the demo:            .venv/bin/stream-wav2lip demo
  Run the tests:           .venv/bin/python -m pytest -m "not soak"
  OBS Studio:              Tools -> Scripts -> + -> $ROOT/obs_plugin/stream_wav2lip_obs.py
                           (the script finds this venv by itself: $ROOT/.venv)
MSG
