"""A tiny, fully synthetic avatar package whose mouth opening follows its own audio loudness.

Why our own: the mouth engine's tests need to know the true mouth of every frame (to check that retrieval
picks matching frames) and must not wait for the real preprocess pipeline; drawing the face from known
landmarks gives both, in milliseconds.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

SIZE, FACE = 160, 96
NUM_LANDMARKS = 478
SR = 16000


def landmarks_for(opening_px: float, dx: float = 0.0) -> np.ndarray:
    """FaceMesh-indexed landmarks (478,2) of a drawn face with the given inner-lip gap in pixels."""
    lm = np.tile(np.array([[80.0, 80.0]], np.float32), (NUM_LANDMARKS, 1))
    o = opening_px
    pts = {33: (55, 60), 263: (105, 60), 133: (70, 60), 362: (90, 60),
           1: (80, 85), 4: (80, 82), 5: (80, 78), 6: (80, 66), 195: (80, 72), 197: (80, 69), 168: (80, 62),
           98: (72, 90), 327: (88, 90), 2: (80, 93), 164: (80, 97), 205: (62, 96), 425: (98, 96),
           61: (62, 110), 291: (98, 110), 78: (65, 110), 308: (95, 110),
           13: (80, 110 - o / 2), 14: (80, 110 + o / 2), 82: (73, 110 - o / 2.5), 87: (73, 110 + o / 2.5),
           312: (87, 110 - o / 2.5), 317: (87, 110 + o / 2.5), 0: (80, 104 - o / 2), 17: (80, 116 + o / 2),
           152: (80, 140 + o / 3)}
    jaw = (132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361)
    for k, ang in zip(jaw, np.linspace(np.pi * 0.95, np.pi * 0.05, len(jaw))):
        pts.setdefault(k, (80 + 42 * np.cos(ang), 100 + (40 + o / 3) * np.sin(ang)))
    for k, (x, y) in pts.items():
        lm[k] = (x + dx, y)
    return lm


def draw_face(opening_px: float, frame_tag: int, dx: float = 0.0) -> np.ndarray:
    img = np.full((SIZE, SIZE, 3), (60, 90, 60), np.uint8)
    cv2.ellipse(img, (int(80 + dx), 95), (45, 58), 0, 0, 360, (120, 150, 200), -1)
    for x in (55, 105):
        cv2.circle(img, (int(x + dx), 60), 5, (40, 30, 30), -1)
    cv2.ellipse(img, (int(80 + dx), 110), (18, max(int(opening_px / 2 + 3), 3)), 0, 0, 360, (60, 60, 170), -1)
    if opening_px >= 1:
        cv2.ellipse(img, (int(80 + dx), 110), (14, max(int(opening_px / 2), 1)), 0, 0, 360, (30, 20, 50), -1)
    img[0:4, frame_tag % SIZE] = 255  # a visible tag: which source frame a pixel came from
    return img


def openings(n: int, seed: int = 0) -> np.ndarray:
    """A speech-like opening track in pixels: bursts separated by silences (mouth closed, 0)."""
    rng = np.random.default_rng(seed)
    o = np.zeros(n, np.float32)
    t = 0
    while t < n:
        talk = int(rng.integers(15, 40))
        seg = np.abs(np.sin(np.arange(talk) * rng.uniform(0.5, 1.1))) * rng.uniform(6, 16)
        o[t:t + talk] = seg[: max(0, min(talk, n - t))]
        t += talk + int(rng.integers(8, 20))
    return o


def audio_for(o: np.ndarray, fps: float = 25.0, seed: int = 1) -> np.ndarray:
    """Audio whose loudness and spectrum follow the opening: wide mouths are loud and bright."""
    rng = np.random.default_rng(seed)
    spf = int(SR / fps)
    t = np.arange(spf * len(o)) / SR
    env = np.repeat(o / 16.0, spf)
    env = np.convolve(env, np.ones(200) / 200, mode="same")
    pitch = 120 + 600 * env
    phase = 2 * np.pi * np.cumsum(pitch) / SR
    wav = env * (0.5 * np.sin(phase) + 0.3 * np.sin(3 * phase) + 0.15 * rng.standard_normal(t.size) * env)
    return (0.6 * wav).astype(np.float32)


def write_package(root: Path, n: int = 150, with_audio: bool = True, still: bool = False) -> Path:
    """Write the package (bg, heads, head_face, body_face, face_det.npz, audio.wav, manifest) and return root."""
    import soundfile

    root.mkdir(parents=True, exist_ok=True)
    o = np.zeros(n, np.float32) if still else openings(n)
    for folder in ("bg", "heads", "head_face", "body_face"):
        (root / folder).mkdir(exist_ok=True)
    lms = np.zeros((n, NUM_LANDMARKS, 2), np.float32)
    for i in range(n):
        dx = 0.0 if still else 2.0 * np.sin(i / 9.0)
        img = draw_face(o[i] if not still else 4.0, 0 if still else i, dx)
        lms[i] = landmarks_for(o[i] if not still else 4.0, dx)
        name = f"{i:06d}.jpg"
        cv2.imwrite(str(root / "bg" / name), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(str(root / "heads" / name), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        face = cv2.resize(img[16:144, 16:144], (FACE, FACE), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(root / "head_face" / name), face, [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(str(root / "body_face" / name), face, [cv2.IMWRITE_JPEG_QUALITY, 95])
    box = np.tile(np.array([[16, 16, 144, 144]], np.float32), (n, 1))
    ident = np.tile(np.array([[[1, 0, 0], [0, 1, 0]]], np.float32), (n, 1, 1))
    np.savez(root / "face_det.npz", body_face_box=box, head_affine=ident, head_face_box=box, landmarks=lms,
             valid=np.ones(n, bool))
    if with_audio:
        soundfile.write(str(root / "audio.wav"), audio_for(o), SR, subtype="PCM_16")
    manifest = {"format_version": 1, "fps": 25, "frame_count": n, "width": SIZE, "height": SIZE,
                "face_size": FACE, "head_size": SIZE, "has_audio": with_audio, "detector": "synthetic"}
    (root / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    np.save(root / "true_opening.npy", o)
    return root
