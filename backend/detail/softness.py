"""How soft the generator's faces are, measured on the avatar at start: where the detail band is cut.

Why: the library stores what a network loses, the crop minus its round trip through the native size with a
blur for the network's own softness (library.SOFTNESS, 0.6 native pixels). No trained checkpoint exists here
to fix that number, and networks differ: on bench/detail.py's oracle a network sharper than assumed (σ 0.3)
got the band's lower part a second time, -1.19 dB PSNR against bicubic; a library cut at its own softness
gives -0.53 dB. A softer one loses more than the default band: at σ 1.0 the default cut left it at 0.79 of the
real frames' sharpness. A cut at its full softness brings back mid frequencies that the exemplars guess only
half right (SSIM -0.011 against bicubic, outside target); a cut at SOFTER_SHARE of it reaches 0.94 of real
sharpness with PSNR +1.35 dB and SSIM -0.008 (σ 1.5: 0.63 -> 0.97 of real). So `library_softness`: a sharper
network's own softness, a softer one's SOFTER_SHARE of it, never below the default.

How: the generator redraws a few of the avatar's own faces (its crops, mel windows of its own audio), and the
fine-band energy of their lower halves is compared with that of the same crops blurred by each candidate σ.
Energy, not a pixel difference, because the network draws the mouth its audio asks for, not the one in the
crop. A network whose faces do not look like the crops at all (untrained or deterministic test weights) gives
no estimate, and the default stands.

The estimate is cached in <avatar>/.cache/softness.json per generator `identity` (checkpoint and precision),
crop and avatar contents: the probe is one batch of network work, 5 % of a 6-s render, paid once, not at
every start.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import cv2
import numpy as np

from backend.detail.library import SOFTNESS

log = logging.getLogger(__name__)

SAMPLES = 8  # faces the generator redraws at start: one batch
MIN_LIKENESS = 0.8  # Pearson r of the blurred lower halves below which the faces are not the avatar's
CANDIDATES = np.round(np.arange(0.0, 2.0001, 0.05), 2)  # σ, native pixels
FINE_SIGMA = 1.0  # the fine band: a face minus its Gaussian blur of this σ
STEP = 0.05  # estimates are rounded to this (one cached library per value)
RECIPE = 1  # bump when the estimate changes (SAMPLES, CANDIDATES, the measure): cached estimates stop matching
CACHE_ENTRIES = 16  # estimates kept per avatar (checkpoints x precisions x crops), the newest
SOFTER_SHARE = 0.8  # a softer network's band is cut at this share of its softness (module docstring)


def _lower_grey(faces: np.ndarray) -> np.ndarray:
    """(N, n, n, 3) uint8 -> (N, h, w) float32 grey lower halves, without the outer n/16 (the crop's edges)."""
    n = faces.shape[1]
    edge = max(1, n // 16)
    grey = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in faces]).astype(np.float32)
    return grey[:, n // 2:n - edge, edge:n - edge]


def _fine_energy(grey: np.ndarray) -> float:
    fine = [g - cv2.GaussianBlur(g, (0, 0), FINE_SIGMA) for g in grey]
    return float(np.mean([np.mean(f * f) for f in fine]))


def blurred(faces: np.ndarray, sigma: float) -> np.ndarray:
    """The uint8 BGR faces blurred by σ, as uint8 BGR: the form a network's faces come in (8-bit rounding and
    OpenCV's 8-bit kernel leave ~20-50 % more fine energy than the same blur in floating point would)."""
    return faces if sigma <= 0 else np.stack([cv2.GaussianBlur(f, (0, 0), float(sigma)) for f in faces])


def estimate_softness(generated: np.ndarray, crops: np.ndarray) -> float | None:
    """The σ (native pixels, a multiple of STEP) by which the Gaussian-blurred `crops` have the fine-band energy
    of `generated`, both (N, n, n, 3) uint8 at the network's size; None when the faces are not the crops' face."""
    levels = [_lower_grey(blurred(crops, s)) for s in CANDIDATES]  # the crops at every candidate σ
    coarse_g = _lower_grey(blurred(generated, float(CANDIDATES[-1]))).ravel()
    coarse_r = levels[-1].ravel()  # likeness is judged at the coarsest candidate: the mouth's detail left out
    if coarse_g.std() < 1e-3 or coarse_r.std() < 1e-3 or np.corrcoef(coarse_g, coarse_r)[0, 1] < MIN_LIKENESS:
        return None
    target = _fine_energy(_lower_grey(generated))
    energy = np.array([_fine_energy(level) for level in levels])  # falls as σ grows
    if target >= energy[0]:
        return 0.0
    if target <= energy[-1]:
        return float(CANDIDATES[-1])
    k = int(np.argmax(energy < target))  # first candidate below the target: the answer lies in [k-1, k]
    t = (energy[k - 1] - target) / max(energy[k - 1] - energy[k], 1e-12)
    sigma = CANDIDATES[k - 1] + t * (CANDIDATES[k] - CANDIDATES[k - 1])
    return float(np.round(sigma / STEP) * STEP)


def library_softness(estimate: float | None) -> float:
    """Where the library's band is cut for a network of this softness (σ, native pixels; a multiple of STEP):
    its own when sharper than the default, SOFTER_SHARE of it (never below the default) when softer, the
    default without an estimate (module docstring)."""
    if estimate is None:
        return SOFTNESS
    cut = estimate if estimate <= SOFTNESS else max(SOFTNESS, SOFTER_SHARE * estimate)
    return round(float(np.round(cut / STEP) * STEP), 2)


def measure_softness(generator, package, crop: str) -> float | None:
    """Let `generator` redraw SAMPLES of the avatar's faces and estimate its softness (None: no estimate); the
    cached estimate when this generator was measured on this avatar before (module docstring)."""
    key = _cache_key(generator, package, crop)
    entries = _read_cache(package) if key else {}
    if key in entries:
        estimate = entries[key]
        _log(estimate, " (measured at an earlier start)")
        return estimate
    estimate, measured = _measure(generator, package, crop)
    if key and measured:
        entries[key] = estimate
        _write_cache(package, entries)
    return estimate


def _measure(generator, package, crop: str) -> tuple[float | None, bool]:
    """(estimate, whether the generator drew the samples: a failure is not cached)."""
    from backend.generators.base import GeneratorInput
    from backend.generators.precision_data import avatar_samples

    size = int(generator.native_size)
    faces, mels = avatar_samples(package, crop, size, SAMPLES)
    try:
        out = generator.generate([GeneratorInput(face, mel, 0) for face, mel in zip(faces, mels)])
    except Exception as exc:  # a plugin that cannot draw these samples: its first real frame will say why
        log.warning("detail: could not measure the generator's softness (%s); default band cut", exc)
        return None, False
    finally:
        generator.reset()
    out = np.asarray(out)
    if out.shape != faces.shape or out.dtype != np.uint8:
        return None, False
    estimate = estimate_softness(out, faces)
    _log(estimate)
    return estimate, True


def _log(estimate: float | None, when: str = "") -> None:
    log.info("detail: the generator's faces are %s%s", "not the avatar's: default band cut" if estimate is None
             else f"as soft as a σ {estimate:.2f} blur (band cut at {library_softness(estimate):.2f})", when)


# ------------------------------------------------------------------------------------------------ cache
def _cache_file(package) -> Path:
    return Path(package.root) / ".cache" / "softness.json"


def _cache_key(generator, package, crop: str) -> str | None:
    """Generator identity, crop, sample size and the avatar's contents; None when nothing may be cached."""
    identity = generator.identity
    if identity is None or getattr(package, "root", None) is None:
        return None
    from backend.generators.precision_data import avatar_hash

    try:
        avatar = avatar_hash(package)
    except OSError:
        return None
    text = f"{identity}|{crop}|{int(generator.native_size)}|{avatar}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _read_cache(package) -> dict:
    """The cached estimates ({} when there are none, they are of another recipe, or the file is damaged)."""
    try:
        data = json.loads(_cache_file(package).read_text(encoding="utf-8"))
        entries = data["estimates"] if data.get("recipe") == RECIPE else {}
        return {str(k): (None if v is None else float(v)) for k, v in entries.items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}


def _write_cache(package, entries: dict) -> None:
    from stream_wav2lip.atomic import atomic_path

    path = _cache_file(package)
    newest = dict(list(entries.items())[-CACHE_ENTRIES:])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps({"recipe": RECIPE, "estimates": newest}, indent=1), encoding="utf-8")
    except OSError as exc:  # a read-only avatar folder: measured again at the next start
        log.warning("%s: could not cache the generator's softness (%s)", path, exc)
