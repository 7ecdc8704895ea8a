"""`stream-wav2lip doctor`: what this machine has, and what is missing for each feature."""
from __future__ import annotations

import argparse
import importlib
import shutil
import sys

HELP = "check the installation: Python packages, ffmpeg, torch device, PortAudio, OBS"


# What to do about a missing piece (printed under the table unless --brief).
FIXES = {
    "torch": "re-run ./install.sh (it installs torch first)",
    "pyaudio": "install PortAudio (Debian: portaudio19-dev), then pip install -e .[audio]",
    "ffmpeg": "install FFmpeg (Debian: apt install ffmpeg; Windows: winget install ffmpeg)",
    "espeak-ng": "install espeak-ng (Debian: apt install espeak-ng)",
    "obs": "install OBS Studio (https://obsproject.com); serve and render work without it",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--brief", action="store_true",
                        help="one line per check, nothing else (what install.sh prints at its end)")


def _module_version(name: str) -> str | None:
    try:
        mod = importlib.import_module(name)
    except Exception:  # noqa: BLE001 - any import failure means "not usable"
        return None
    return str(getattr(mod, "__version__", "ok"))


def checks() -> list[tuple[str, bool, str]]:
    """(name, ok, detail) for every dependency the product can use."""
    rows: list[tuple[str, bool, str]] = [("python", True, sys.version.split()[0])]
    for mod, why in [
        ("numpy", "everything"),
        ("torch", "networks"),
        ("librosa", "audio features"),
        ("av", "video decode/encode"),
        ("cv2", "image ops"),
        ("mediapipe", "face tracking (preprocess)"),
        ("pyaudio", "microphone / playback"),
        ("onnxruntime", "int8 CPU inference"),
    ]:
        v = _module_version(mod)
        rows.append((mod, v is not None, v or f"missing: needed for {why}"))
    try:
        import torch

        dev = "cuda " + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu only"
        rows.append(("device", True, f"{dev}, {torch.get_num_threads()} threads"))
    except Exception:  # noqa: BLE001
        pass
    if any(name == "numpy" and ok for name, ok, _ in rows):
        from backend.generators.precision import device_plans

        rows.extend(device_plans())  # which precision `--precision auto` would use on each device
    if any(name == "av" and ok for name, ok, _ in rows):
        from backend.sinks.encoders import choose_encoder, probe

        why = probe("h264_nvenc")  # the reason matters on a GPU host where NVENC does not open
        rows.append(("render encoder", True, f"{choose_encoder('auto')} (NVENC: "
                                             f"{'available' if why is None else why})"))
    for tool, why in [("ffmpeg", "audio formats"), ("espeak-ng", "demo speech"), ("obs", "OBS Studio")]:
        path = shutil.which(tool)
        rows.append((tool, path is not None, path or f"missing: needed for {why}"))
    return rows


def run(args: argparse.Namespace) -> int:
    rows = checks()
    for name, ok, detail in rows:
        print(f"  {'ok ' if ok else '-- '} {name:<20} {detail}")
    if args.brief:
        return 0
    missing = [name for name, ok, _ in rows if not ok]
    print(f"\n{len(rows) - len(missing)} of {len(rows)} checks ok" + ("." if not missing else "; to fix:"))
    for name in missing:
        print(f"  {name}: {FIXES.get(name, 're-run ./install.sh')}")
    return 0
