"""The per-frame realism measures of bench/realism.py, on full frames in frame pixels.

Why these regions: the artefacts people saw (issue 19) sit beside the mouth corners (a smear of another
frame's hair or background) and on the jaw contour (a ghost jawline, a washed-out beard), and on the lips
themselves (their colour jumping between frames). Patches are placed from FaceMesh landmarks of the frame the
output was built on, scaled by the outer eye-corner distance so a 1080p close-up and a small face are judged
alike.
"""
from __future__ import annotations

import cv2
import numpy as np

from preprocess import landmarks as L

# patch name -> (anchor landmark, outward-from landmark or None, offset along it, in eye distances)
PATCHES = ("cheek_l", "cheek_r", "jaw_l", "jaw_r")
PATCH_SIDE = 0.2  # eye distances
SSIM_C1, SSIM_C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def eye_distance(lm: np.ndarray) -> float:
    return float(max(np.linalg.norm(lm[33] - lm[263]), 1e-3))


def patch_boxes(lm: np.ndarray, shape) -> dict[str, tuple[int, int, int, int]]:
    """x0, y0, x1, y1 (frame pixels) of each patch: cheeks beside the mouth corners, jaw contour below them."""
    lm = np.asarray(lm, np.float64)
    e = eye_distance(lm)
    across = lm[291] - lm[61]
    across /= max(np.linalg.norm(across), 1e-6)
    centres = {"cheek_l": lm[61] - 0.28 * e * across, "cheek_r": lm[291] + 0.28 * e * across,
               "jaw_l": lm[136], "jaw_r": lm[365]}
    half = max(4.0, PATCH_SIDE * e / 2)
    h, w = shape[:2]
    boxes = {}
    for name, c in centres.items():
        x0, y0 = int(round(c[0] - half)), int(round(c[1] - half))
        x1, y1 = int(round(c[0] + half)), int(round(c[1] + half))
        boxes[name] = (max(0, x0), max(0, y0), min(w, x1), min(h, y1))
    return boxes


def to_lab(bgr: np.ndarray) -> np.ndarray:
    """CIE Lab with L in 0..100 (OpenCV's float conversion)."""
    return cv2.cvtColor(bgr.astype(np.float32) * np.float32(1 / 255.0), cv2.COLOR_BGR2Lab)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two grey patches (Gaussian window, sigma 1.5, the usual constants)."""
    a, b = a.astype(np.float32), b.astype(np.float32)
    blur = lambda x: cv2.GaussianBlur(x, (0, 0), 1.5)  # noqa: E731
    ma, mb = blur(a), blur(b)
    va, vb, cov = blur(a * a) - ma * ma, blur(b * b) - mb * mb, blur(a * b) - ma * mb
    s = ((2 * ma * mb + SSIM_C1) * (2 * cov + SSIM_C2)) / ((ma * ma + mb * mb + SSIM_C1) * (va + vb + SSIM_C2))
    return float(s.mean())


def texture_energy(grey: np.ndarray) -> float:
    """Mean squared high-frequency detail (grey minus its sigma-2 blur), plus a floor for flat JPEG skin."""
    g = grey.astype(np.float32)
    hf = g - cv2.GaussianBlur(g, (0, 0), 2.0)
    return float((hf * hf).mean()) + 1.0


def patch_stats(out: np.ndarray, ref: np.ndarray, box: tuple[int, int, int, int]) -> dict:
    x0, y0, x1, y1 = box
    if x1 - x0 < 4 or y1 - y0 < 4:
        return {"ssim": np.nan, "de": np.nan, "tex": np.nan, "lab": np.full(3, np.nan), "lab_ref": np.full(3, np.nan)}
    po, pr = out[y0:y1, x0:x1], ref[y0:y1, x0:x1]
    go, gr = cv2.cvtColor(po, cv2.COLOR_BGR2GRAY), cv2.cvtColor(pr, cv2.COLOR_BGR2GRAY)
    lo, lr = to_lab(po).reshape(-1, 3).mean(0), to_lab(pr).reshape(-1, 3).mean(0)
    return {"ssim": ssim(go, gr), "de": float(np.linalg.norm(lo - lr)),
            "tex": texture_energy(go) / texture_energy(gr), "lab": lo, "lab_ref": lr}


def lip_mask(lm: np.ndarray, shape) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The lips (outer contour minus the inner one) pulled in from both edges by 1.5 % of the eye distance (so
    FaceMesh's contour error does not count teeth or skin as lip), in their bounding box."""
    outer = np.asarray(lm, np.float64)[list(L.LIPS_OUTER)]
    inner = np.asarray(lm, np.float64)[list(L.LIPS_INNER)]
    h, w = shape[:2]
    x0, y0 = np.floor(outer.min(0)).astype(int) - 2
    x1, y1 = np.ceil(outer.max(0)).astype(int) + 3
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    m = np.zeros((max(1, y1 - y0), max(1, x1 - x0)), np.uint8)
    off = np.array([x0, y0])
    cv2.fillPoly(m, [np.round(outer - off).astype(np.int32)], 255)
    cv2.fillPoly(m, [np.round(inner - off).astype(np.int32)], 0)
    k = max(1, int(round(0.015 * eye_distance(np.asarray(lm, np.float64)))))
    m = cv2.erode(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
    return m, (x0, y0, x1, y1)


def lip_colour(img: np.ndarray, lm: np.ndarray) -> np.ndarray | None:
    """Median Lab colour of the lips, or None when too few lip pixels are visible."""
    m, (x0, y0, x1, y1) = lip_mask(lm, img.shape)
    if cv2.countNonZero(m) < 8:
        return None
    lab = to_lab(img[y0:y1, x0:x1])[m > 0]
    return np.median(lab, axis=0).astype(np.float64)  # the median: a few teeth or skin pixels do not move it


def lip_sharpness(img: np.ndarray, lm: np.ndarray) -> float:
    """Variance of the Laplacian over the lip box (ghost lips from a cross-fade and blur lower it)."""
    _, (x0, y0, x1, y1) = lip_mask(lm, img.shape)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return float("nan")
    g = cv2.cvtColor(img[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(g, cv2.CV_32F).var())


def psnr_in_mask(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    d = (a.astype(np.float64) - b.astype(np.float64))[mask]
    mse = float((d * d).mean()) if d.size else 0.0
    return 99.0 if mse <= 1e-10 else float(10 * np.log10(255.0 ** 2 / mse))


class StaticMesh:
    """FaceMesh in still-image mode on a square cut around a known face: landmarks in frame pixels.

    Why not the video tracker: on lip-synced output the mouth changes shape faster than any real mouth, and the
    tracker's landmarks lag it (lips found on the teeth, or above the mouth), which read as lip-colour jumps
    that are not there. Each frame, output and footage alike, is measured on its own.
    """

    SIZE = 256

    def __init__(self):
        from preprocess.tracking import native_stderr_silenced, quiet_native_logs

        quiet_native_logs()
        with native_stderr_silenced():
            import mediapipe as mp

            self._mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                                         refine_landmarks=True, min_detection_confidence=0.3)

    def close(self) -> None:
        self._mesh.close()

    def landmarks(self, img: np.ndarray, around: np.ndarray) -> np.ndarray | None:
        """(478, 2) landmarks of the face near landmarks `around` (the avatar frame's), or None."""
        pts = np.asarray(around, np.float64)[list(L.FACE_OVAL)]
        c = (pts.min(0) + pts.max(0)) / 2
        half = 0.8 * float(np.max(pts.max(0) - pts.min(0)))
        scale = self.SIZE / (2 * half)
        m = np.array([[scale, 0, self.SIZE / 2 - scale * c[0]], [0, scale, self.SIZE / 2 - scale * c[1]]])
        crop = cv2.warpAffine(img, m, (self.SIZE, self.SIZE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
        res = self._mesh.process(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))
        if not res.multi_face_landmarks:
            return None
        lm = np.array([(p.x * self.SIZE, p.y * self.SIZE) for p in res.multi_face_landmarks[0].landmark])
        return (lm - m[:, 2]) / scale


class FrameScores:
    """Rows of per-frame scores (frame number -> metric -> value); skipped frames count as missing."""

    def __init__(self):
        self.frames: list[int] = []
        self.rows: list[dict] = []

    def add(self, k: int, row: dict) -> None:
        self.frames.append(k)
        self.rows.append(row)

    def skip(self) -> None:
        pass

    def column(self, key: str) -> np.ndarray:
        return np.array([float(r.get(key, np.nan)) for r in self.rows], np.float64)

    def column_min(self, keys: list[str]) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.nanmin(np.stack([self.column(k) for k in keys]), axis=0) if self.rows else np.zeros(0)

    def column_max(self, keys: list[str]) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.nanmax(np.stack([self.column(k) for k in keys]), axis=0) if self.rows else np.zeros(0)

    def badness(self) -> np.ndarray:
        """How far each frame is past the targets (max over measures, 1 = at a target): picks the worst frames."""
        ssim = (1 - self.column_min([f"{p}_ssim" for p in PATCHES])) / 0.1
        de = self.column_max([f"{p}_de" for p in PATCHES]) / 3.0
        tex = np.abs(np.log(self.column_min([f"{p}_tex" for p in PATCHES]))) / np.log(1 / 0.85)
        lip = np.fmax(self.column("lip_de_f2f"), self.column("lip_de_footage")) / 6.0
        with np.errstate(all="ignore"):
            return np.nan_to_num(np.nanmax(np.stack([ssim, de, tex, lip]), axis=0), nan=0.0)
