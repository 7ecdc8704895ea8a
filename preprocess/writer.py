"""Writing the pieces of an avatar package (docs/architecture.md, "The avatar package") into a (temporary)
package folder.

Shared by the real pipeline and the synthetic test avatar so both produce byte-compatible layouts that
`preprocess.package.AvatarPackage` reads.
"""
from __future__ import annotations

import json
import wave
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from preprocess.crops import body_face_crop, head_crop, head_face_crop, write_jpeg
from preprocess.geometry import Geometry
from preprocess.package import CROP_FOLDERS, FORMAT_VERSION, frame_name


def make_folders(pkg_dir: Path) -> None:
    for folder in CROP_FOLDERS.values():
        (pkg_dir / folder).mkdir(parents=True, exist_ok=True)


def frame_crops(frame: np.ndarray, geometry: Geometry, i: int, face_size: int, head_size: int) -> dict[str, np.ndarray]:
    """The four images of frame i keyed by package folder name."""
    return {
        CROP_FOLDERS["bg"]: frame,
        CROP_FOLDERS["body"]: body_face_crop(frame, geometry.body_face_box[i], face_size),
        CROP_FOLDERS["heads"]: head_crop(frame, geometry.head_affine[i], head_size),
        CROP_FOLDERS["head"]: head_face_crop(frame, geometry.head_affine[i], geometry.head_face_box[i], face_size),
    }


def write_frame(pkg_dir: Path, i: int, crops: dict[str, np.ndarray]) -> None:
    for folder, image in crops.items():
        write_jpeg(pkg_dir / folder / frame_name(i), image)


def write_face_det(pkg_dir: Path, geometry: Geometry, landmarks: np.ndarray, valid: np.ndarray) -> None:
    np.savez(pkg_dir / "face_det.npz",
             body_face_box=geometry.body_face_box.astype(np.float32),
             head_affine=geometry.head_affine.astype(np.float32),
             head_face_box=geometry.head_face_box.astype(np.float32),
             landmarks=np.asarray(landmarks, np.float32),
             valid=np.asarray(valid, bool))


def write_wav16(path: Path, samples: np.ndarray, sample_rate: int = 16000) -> None:
    """Mono 16-bit PCM WAV from float samples in [-1, 1]."""
    pcm = (np.clip(np.asarray(samples, np.float32), -1.0, 1.0) * 32767.0).round().astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())


def base_manifest(**fields) -> dict:
    """The manifest keys every package has, plus `fields` (docs/architecture.md, "The avatar package")."""
    manifest = {
        "format_version": FORMAT_VERSION,
        "fps": 25,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    manifest.update(fields)
    return manifest


def write_manifest(pkg_dir: Path, manifest: dict) -> None:
    (pkg_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def update_manifest(pkg_dir: str | Path, key: str, value) -> dict:
    """Set one entry of a finished package's manifest (a part added later: matte, idle table, action),
    written under a temporary name and renamed, so a reader never sees half a manifest. Returns it."""
    from stream_wav2lip.atomic import atomic_path

    path = Path(pkg_dir) / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest[key] = value
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return manifest
