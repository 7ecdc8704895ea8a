"""`stream-wav2lip demo`: a talking avatar on a fresh machine, with nothing downloaded and no input.

Why it exists: every Wav2Lip-family tool is useless until the user finds weights. This command shows the whole
product working right after install: it builds a demo avatar from a face image shipped inside an installed
package (scikit-image's `astronaut`), gives it a few seconds of gentle idle motion, preprocesses it through the
real `preprocess` pipeline, makes speech offline with espeak-ng (English and Mandarin), and renders `demo.mp4`
through the real render path with the weightless `mouth` engine. With `--video my.mp4` it does the same on the
user's own video, which is the first step towards going live.
"""
from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stream_wav2lip.errors import UserError

log = logging.getLogger(__name__)

FPS = 25
AVATAR_NAME = "astronaut"
AVATAR_SECONDS = 3.0
AVATAR_SIZE = 512
FACE_BOX = (106, 14, 346, 254)  # x1, y1, x2, y2 of the head in skimage.data.astronaut() (512 x 512)
SAMPLE_RATE = 16000
TEXTS = {
    "en": ("en-us", "Hello! I am your stream avatar. My mouth follows your voice, and it rests when you stop."),
    "zh": ("cmn-latn-pinyin", "大家好，我是你的直播形象。我的嘴巴跟着你的声音动。"),
}
PAUSE_S = 0.6  # silence between the two languages: shows the mouth closing


@dataclass
class DemoResult:
    avatar: Path
    speech: Path
    video: Path
    seconds: float
    frames: int
    mode: str
    voice: str


# ------------------------------------------------------------------------------------------ the avatar
def astronaut_face() -> np.ndarray:
    """The shipped face image, cropped to the head and scaled to AVATAR_SIZE (BGR uint8)."""
    import cv2

    try:
        from skimage import data
    except ImportError as exc:
        raise UserError(f"scikit-image is not installed ({exc}); re-run ./install.sh") from None
    rgb = data.astronaut()
    x1, y1, x2, y2 = FACE_BOX
    face = np.ascontiguousarray(rgb[y1:y2, x1:x2, ::-1])
    return cv2.resize(face, (AVATAR_SIZE, AVATAR_SIZE), interpolation=cv2.INTER_CUBIC)


def idle_frames(image: np.ndarray, seconds: float = AVATAR_SECONDS) -> list[np.ndarray]:
    """A still photo made alive: a slow breathing zoom and a small sway, looping smoothly (BGR frames)."""
    import cv2

    h, w = image.shape[:2]
    frames = []
    n = int(round(seconds * FPS))
    for i in range(n):
        phase = 2 * np.pi * i / n
        scale = 1.0 + 0.012 * (1 - np.cos(phase)) / 2
        dy = 1.5 * np.sin(phase)
        angle = 0.4 * np.sin(phase)
        m = cv2.getRotationMatrix2D((w / 2, h * 0.45), angle, scale)
        m[1, 2] += dy
        frames.append(cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    return frames


def write_clip(frames: list[np.ndarray], path: Path) -> None:
    """Frames -> H.264 mp4 (no audio) at 25 fps, high quality so preprocess sees a clean face."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "12", "preset": "veryfast"}
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def build_demo_avatar(out: Path, progress: bool = True) -> Path:
    """The astronaut avatar package in out/avatars/ (reused when it exists)."""
    from preprocess.api import preprocess_video
    from preprocess.package import is_avatar_package

    avatars = out / "avatars"
    package = avatars / AVATAR_NAME
    if is_avatar_package(package):
        return package
    avatars.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="s2l-demo-") as tmp:
        clip = Path(tmp) / f"{AVATAR_NAME}.mp4"
        write_clip(idle_frames(astronaut_face()), clip)
        return preprocess_video(clip, avatars, progress=progress)


# ------------------------------------------------------------------------------------------ the speech
def espeak(text: str, voice: str, path: Path) -> None:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise FileNotFoundError("espeak-ng")
    subprocess.run([exe, "-v", voice, "-s", "150", "-w", str(path), text], check=True, capture_output=True,
                   timeout=60)


def babble(seconds: float = 4.0) -> np.ndarray:
    """A vowel-like stand-in voice (syllable rhythm, harmonics) when espeak-ng is missing, 16 kHz float32."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    syllables = np.clip(np.sin(2 * np.pi * 4.0 * t), 0, None) ** 0.6 * (np.sin(2 * np.pi * 0.35 * t) > -0.6)
    pitch = 140 + 25 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    return (0.25 * syllables * voice).astype(np.float32)


def make_speech(lang: str, path: Path) -> str:
    """Write the demo speech (16 kHz mono wav) to `path`; returns a description of the voice used."""
    import soundfile

    from models.audio import load_audio

    langs = ["en", "zh"] if lang == "both" else [lang]
    parts: list[np.ndarray] = []
    used = []
    try:
        with tempfile.TemporaryDirectory(prefix="s2l-demo-tts-") as tmp:
            for code in langs:
                voice, text = TEXTS[code]
                wav = Path(tmp) / f"{code}.wav"
                espeak(text, voice, wav)
                if parts:
                    parts.append(np.zeros(int(PAUSE_S * SAMPLE_RATE), np.float32))
                parts.append(load_audio(wav))
                used.append(f"espeak-ng {voice}")
    except (FileNotFoundError, subprocess.SubprocessError, UserError) as exc:
        log.warning("espeak-ng unavailable (%s): using a synthetic stand-in voice", exc)
        parts, used = [babble()], ["synthetic babble (install espeak-ng for real speech)"]
    speech = np.concatenate([np.zeros(int(0.3 * SAMPLE_RATE), np.float32), *parts,
                             np.zeros(int(0.4 * SAMPLE_RATE), np.float32)])
    soundfile.write(str(path), speech, SAMPLE_RATE, subtype="PCM_16")
    return ", ".join(used)


# ------------------------------------------------------------------------------------------ the demo
def run_demo(out: Path, video: Path | None = None, audio: Path | None = None, lang: str = "both",
             progress: bool = True) -> DemoResult:
    """Build (or preprocess) the avatar, make speech, render out/demo.mp4 with the mouth engine."""
    from backend.render import render
    from preprocess.package import AvatarPackage

    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    if video is not None:
        if not video.is_file():
            raise UserError(f"{video}: video file not found")
        from preprocess.api import preprocess_video

        avatar = preprocess_video(video, out / "avatars", progress=progress)
    else:
        avatar = build_demo_avatar(out, progress=progress)
    if audio is not None:
        speech, voice = audio, f"your audio {audio.name}"
        if not audio.is_file():
            raise UserError(f"{audio}: audio file not found")
    else:
        speech = out / "speech.wav"
        voice = make_speech(lang, speech)
    result = render(avatar, [speech], out / "demo.mp4", engine="mouth", progress=progress)
    calib = AvatarPackage.open(avatar).manifest.get("mouth_calibration", {})
    return DemoResult(avatar=avatar, speech=speech, video=out / "demo.mp4", seconds=time.perf_counter() - t0,
                      frames=result.frames, mode=str(calib.get("mode", "?")), voice=voice)


def next_steps(result: DemoResult, used_own_video: bool) -> str:
    avatars = result.avatar.parent
    lines = [
        f"Done in {result.seconds:.0f} s: {result.video} ({result.frames / FPS:.1f} s, {result.voice}).",
        f"Avatar package: {result.avatar}  (mouth engine mode: {result.mode}"
        + (", the lowest-quality lip warp: a still photo has no mouth images to choose from)" if result.mode == "warp"
           else ")"),
        "",
        "Next steps:",
    ]
    if not used_own_video:
        lines += ["  1. Your own face: record 1-2 minutes of yourself talking (front camera, good light), then",
                  "       stream-wav2lip demo --video my.mp4",
                  "     The mouth engine then shows your real mouth images matched to the speech (30 s+ of talking",
                  "     recommended); a Wav2Lip checkpoint (--checkpoint) gives real lip-sync."]
    else:
        lines += [f"  1. Render any speech:  stream-wav2lip render --avatar {result.avatar} --audio speech.wav -o out.mp4"]
    script = Path(__file__).resolve().parents[1] / "obs_plugin" / "stream_wav2lip_obs.py"
    lines += [
        f"  2. Go live in OBS: Tools > Scripts > + > {script}",
        f"     add a 'Lip-sync avatar' source, set its avatars folder to {avatars}, pick '{result.avatar.name}',",
        "     leave the checkpoint empty (mouth engine) or choose a Wav2Lip .pth, press Start. Details: docs/obs.md",
        f"     Without OBS:  stream-wav2lip serve --avatar {result.avatar} --session main",
        "                   stream-wav2lip say --session main hello.wav      (speak a file; --flush stops)",
        "  Check the machine any time with:  stream-wav2lip doctor",
    ]
    return "\n".join(lines)
