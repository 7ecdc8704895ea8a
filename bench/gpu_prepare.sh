#!/usr/bin/env bash
# Prepare, on this machine, everything a GPU session carries to a lent GPU machine that has no network and no
# mediapipe (docs/benchmarks.md "CUDA"): then one call runs bench/gpu_check.sh there.
#
#   bench/gpu_prepare.sh    # wheels, the detail benchmark's training set, the golden files: ~15 s once the
#                           # clips' packages are cached in /tmp/s2l-bench-detail, a few minutes before
#
# Writes three git-ignored folders (added to .git/info/exclude), about 58 MB together (a call carries 64 MiB):
#   .whl/             cp312 manylinux wheels the GPU image lacks: PyAV, soundfile, soxr, librosa and their needs
#   .gpudata/set      bench/trained_faces.py prepare: the shared clips cut for training and held-out drawing
#   .gpudata/shared   the golden forwards the cuda tests compare with (../shared does not travel)
#
# Then, with the device tool (carry [".whl", ".gpudata"]; the command is one line):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site
#     .whl/*.whl && export PYTHONPATH=/tmp/site S2L_SHARED_DIR=$PWD/.gpudata/shared PYTHON=python3
#     TRAIN_MINUTES=2 && timeout 520 bench/gpu_check.sh /tmp/gc; cp /tmp/gc/*.npz /tmp/gc/*.md $OUT/;
#     tar czf $OUT/logs.tgz -C /tmp/gc --exclude='*.npz' .
# (at most 8 files come back: the logs travel as one archive). Session 18 ran it in 290 s.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$REPO/.venv/bin/python}"
cd "$REPO"
mkdir -p .git/info
for d in /.whl/ /.gpudata/; do grep -qxF "$d" .git/info/exclude 2>/dev/null || echo "$d" >>.git/info/exclude; done

PLATFORMS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  PLATFORMS+=(--platform "$p")
done
# the versions this project's own environment runs; --no-deps: each need is named
for w in av==18.1.0 soundfile==0.14.0 soxr==1.1.0 cffi==2.1.1 pycparser==3.12 librosa==0.11.0 audioread decorator \
         pooch platformdirs; do
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${PLATFORMS[@]}" -d .whl "$w"
done

"$PY" bench/trained_faces.py prepare --out .gpudata/set

GOLDEN="${S2L_SHARED_DIR:-$REPO/../shared}/reference/golden"
mkdir -p .gpudata/shared/reference/golden
for v in wav2lip96 wav2lip288 syncnet96 disc_qual96; do
  cp "$GOLDEN/${v}"_det_*.npy .gpudata/shared/reference/golden/
done
du -sh .whl .gpudata
