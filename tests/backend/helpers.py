"""Small fakes shared by the backend stage tests (no I/O): a package held in memory, recording generators."""
from __future__ import annotations

import numpy as np

from backend.generators.base import Generator, GeneratorInput
from preprocess.package import FaceTrack


class MemoryPackage:
    """Duck-typed AvatarPackage with frames in memory and hand-made geometry (for border / edge cases)."""

    def __init__(self, frames: np.ndarray, landmarks: np.ndarray, body_box: np.ndarray, head_affine: np.ndarray,
                 head_face_box: np.ndarray, face_size: int = 96, head_size: int = 128):
        from preprocess.crops import body_face_crop, head_crop, head_face_crop

        n = len(frames)
        self.frames = frames
        self.track = FaceTrack(body_box.astype(np.float32), head_affine.astype(np.float32),
                               head_face_box.astype(np.float32), landmarks.astype(np.float32), np.ones(n, bool))
        self.frame_count, self.height, self.width = n, frames.shape[1], frames.shape[2]
        self.face_size, self.head_size, self.fps = face_size, head_size, 25.0
        self.crops = {
            "bg": list(frames),
            "body": [body_face_crop(f, body_box[i], face_size) for i, f in enumerate(frames)],
            "heads": [head_crop(f, head_affine[i], head_size) for i, f in enumerate(frames)],
            "head": [head_face_crop(f, head_affine[i], head_face_box[i], face_size) for i, f in enumerate(frames)],
        }

    def image(self, kind: str, i: int) -> np.ndarray:
        return self.crops[kind][i]

    def frame(self, i: int) -> np.ndarray:
        return self.crops["bg"][i]

    def face(self, i: int, crop: str = "head") -> np.ndarray:
        return self.crops[crop][i]

    def cached(self, key, load):
        return load()


class RecordingGenerator(Generator):
    """Returns a flat colour face and records every batch it was given."""

    name = "recording"

    def __init__(self, face_size: int = 96, colour=(0, 0, 255), crop: str = "head"):
        self.face_size, self.colour, self.crop = face_size, colour, crop
        self.batches: list[list[GeneratorInput]] = []
        self.resets = 0

    def generate(self, batch):
        self.batches.append(list(batch))
        s = batch[0].face.shape[0]
        out = np.empty((len(batch), s, s, 3), np.uint8)
        out[:] = np.array(self.colour, np.uint8)
        return out

    def reset(self):
        self.resets += 1


def speech_like(seconds: float, seed: int = 0, level: float = 0.3) -> np.ndarray:
    """Noise-modulated tone bursts with pauses: enough for gates and mels, deterministic."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * 16000))
    t = np.arange(n) / 16000
    env = (np.sin(2 * np.pi * 2.0 * t) > -0.3).astype(np.float32)
    x = level * env * (np.sin(2 * np.pi * 190 * t) + 0.3 * rng.standard_normal(n))
    return x.astype(np.float32)


def half_matted_package(root, soft_edge: int = 0):
    """A 12-frame synthetic avatar at `root` whose matte keeps its left half (the 'person', 255) and drops the
    right half (0), with `soft_edge` columns of 128 between them (transparency tests)."""
    import json

    from preprocess.matte_store import MATTE_FOLDER, matte_name, write_alpha
    from preprocess.synthetic import write_synthetic_package

    root = write_synthetic_package(root, frames=12)
    manifest = json.loads((root / "manifest.json").read_text())
    w, h = manifest["width"], manifest["height"]
    alpha = np.zeros((h, w), np.uint8)
    alpha[:, : w // 2] = 255
    alpha[:, w // 2: w // 2 + soft_edge] = 128
    (root / MATTE_FOLDER).mkdir()
    for i in range(manifest["frame_count"]):
        write_alpha(root / MATTE_FOLDER / matte_name(i), alpha)
    manifest["matte"] = {"method": "test", "frames": manifest["frame_count"], "width": w, "height": h}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def speak(engine, wav: np.ndarray) -> list:
    """Push one utterance into `engine`, then plan and render every frame of it (forced to the end)."""
    from backend.frames import AudioFrame, SpeechEndFrame, SpeechStartFrame

    engine.push(SpeechStartFrame(0))
    engine.push(AudioFrame(0, wav))
    engine.push(SpeechEndFrame(0))
    plans = []
    while batch := engine.plan(force=True):
        engine.render(batch)
        plans += batch
    return plans
