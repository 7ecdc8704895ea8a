"""`MouthGenerator`: the weightless generator. Same contract as the Wav2Lip network (backend.generator).

Per batch: mel windows -> predicted mouth descriptors (DescriptorPredictor) -> real avatar frames whose mouth
fits, chosen with smooth motion and the current frame's head pose (FrameChooser) -> that frame's lips and the
skin right around them, aligned and tone-matched, moved onto the current frame's crop (transfer_mouth).
Footage without usable speech -> the lips of the current frame are warped open and shut by loudness
(warp_mouth), the lowest-quality mode, said so in the log.
Deterministic: the same inputs in the same batches after `reset()` give the same pixels.
"""
from __future__ import annotations

import logging

import numpy as np

from backend.generators.base import Generator, GeneratorInput
from backend.mouth.chooser import FrameChooser
from backend.mouth.geometry import crop_landmarks, pose_features
from backend.mouth.predictor import DescriptorPredictor
from backend.mouth.transfer import transfer_mouth
from backend.mouth.warp import warp_mouth
from preprocess.mouth_calibration import MouthCalibration, load_or_calibrate
from preprocess.package import AvatarPackage

log = logging.getLogger(__name__)

CROPS = ("heads", "head", "body")


class MouthGenerator(Generator):
    """Drives the avatar's own mouth images from speech. `crop`: 'heads' (default, sharpest), 'head' or 'body'."""

    name = "mouth"
    # Silence must show the footage's *resting* mouth, which the idle loop of talking footage does not: the
    # engine runs this generator on silent frames too (speech=False) instead of keeping the footage.
    handles_silence = True
    needs_calibration = True
    real_pixels = True  # real mouth images of the footage: nothing for the detail stage to restore  # the avatar's mouth calibration (preprocess.mouth_calibration), made by preprocess

    @classmethod
    def prepare_avatar(cls, root, progress: bool = False) -> str | None:
        """preprocess's hook: calibrate the avatar's mouths once (else the first use does it)."""
        import warnings

        from preprocess.mouth_calibration import calibrate

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = calibrate(root)
        return str(result["warning"]) if isinstance(result, dict) and result.get("warning") else None

    def __init__(self, package: AvatarPackage, crop: str | None = "heads", calibration: MouthCalibration | None = None,
                 mode: str = "auto", jump_cost: float = 0.5, consecutive_bonus: float = 1.0,
                 knn_weight: float = 0.5, batch: int = 5, batch_size: int | None = None):
        crop = crop or "heads"
        if crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
        self.package = package
        self.crop = crop
        self.face_size = package.head_size if crop == "heads" else package.face_size
        self.calib = calibration if calibration is not None else load_or_calibrate(package.root)
        self.predictor = DescriptorPredictor(self.calib, knn_weight=knn_weight)
        self.mode = self.calib.mode if mode == "auto" else mode
        if self.mode == "retrieval" and not self.predictor.usable:
            self.mode = "warp"
        if self.mode == "warp":  # too little speech to learn from: opening follows loudness instead
            self.predictor.usable = False
        allowed = self.calib.valid if self.calib.valid.any() else np.ones(package.frame_count, bool)
        # every avatar frame's pose (the library is the package's first len(descriptors) frames)
        pose = pose_features(package.track.landmarks)
        pose = pose if len(pose) >= len(self.calib.descriptors) else None
        self.chooser = FrameChooser(self.calib.descriptors, self.calib.desc_scale, allowed,
                                    jump_cost=jump_cost, consecutive_bonus=consecutive_bonus, pose=pose)
        self._batch = int(batch_size or batch)
        self._landmarks: dict[int, np.ndarray] = {}
        self._warp_opening: float | None = None
        self.last_choice: np.ndarray = np.zeros(0, np.int64)  # the source frames of the last batch (tests/bench)
        self.last_descriptors: np.ndarray = np.zeros((0, 3), np.float32)
        s = self.calib.usable_speech_s
        if self.mode == "warp":
            log.warning("mouth engine: %s has %.1f s of usable speech -> lip-warp mode (lowest quality: the "
                        "avatar's own lips are stretched by loudness). Record 30 s+ of talking for real mouth "
                        "images, or use a Wav2Lip checkpoint.", package.name, s)
        else:
            log.info("mouth engine: %s, %.1f s of speech footage, A/V offset %+d frames%s", package.name, s,
                     self.calib.av_offset, " (under 30 s: matches will be rough)" if s < 30 else "")

    @property
    def preferred_batch(self) -> int:
        return self._batch

    def reset(self) -> None:
        self.chooser.reset()
        self._warp_opening = None

    def landmarks(self, i: int) -> np.ndarray:
        lm = self._landmarks.get(i)
        if lm is None:
            lm = crop_landmarks(self.package, i, self.crop, self.face_size)
            self._landmarks[i] = lm
        return lm

    def item_landmarks(self, item: GeneratorInput) -> np.ndarray:
        """Landmarks of the frame an item is built on: the avatar's own, or an action clip's (item.package)."""
        if item.package is None:
            return self.landmarks(int(item.avatar_index))
        key = (id(item.package), int(item.avatar_index))
        lm = self._landmarks.get(key)
        if lm is None:
            lm = self._landmarks[key] = crop_landmarks(item.package, int(item.avatar_index), self.crop,
                                                       self.face_size)
        return lm

    def source_crop(self, j: int) -> np.ndarray:
        return self.package.image(self.crop, j)

    def generate(self, batch: list[GeneratorInput]) -> np.ndarray:
        if not batch:
            return np.zeros((0, self.face_size, self.face_size, 3), np.uint8)
        windows = np.stack([item.mel for item in batch]).astype(np.float32)
        flags = np.array([item.speech for item in batch], np.float32)
        preds, speech = self.predictor.predict(windows, flags)
        self.last_descriptors = preds
        if self.mode == "warp":
            return np.stack([self._warp(item, p[0]) for item, p in zip(batch, preds)])
        # an action clip's frame (item.package) is not one of the library's: no pose term, no native candidate
        shown = np.array([int(item.avatar_index) if item.package is None else -1 for item in batch])
        choice = self.chooser.choose(preds, shown)
        self.last_choice = choice
        out = []
        for item, j, i in zip(batch, choice, shown):
            face = self._fit(item.face)
            if int(j) == i:
                out.append(face)
                continue
            out.append(transfer_mouth(face, self.item_landmarks(item), self._fit(self.source_crop(int(j))),
                                      self.landmarks(int(j))))
        return np.stack(out)

    def _warp(self, item: GeneratorInput, opening: float) -> np.ndarray:
        # light smoothing (fast attack, slower release) so the flap is not a strobe
        prev = self._warp_opening
        if prev is not None:
            a = 0.7 if opening > prev else 0.45
            opening = prev + a * (opening - prev)
        self._warp_opening = float(opening)
        return warp_mouth(self._fit(item.face), self.item_landmarks(item), float(opening))

    def _fit(self, img: np.ndarray) -> np.ndarray:
        if img.shape[0] == self.face_size and img.shape[1] == self.face_size:
            return img
        import cv2

        return cv2.resize(img, (self.face_size, self.face_size), interpolation=cv2.INTER_AREA)
