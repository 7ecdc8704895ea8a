"""MediaPipe FaceMesh landmark index groups and the few measurements every part of the product takes from them.

Why one module: preprocess, the compositor, the mouth engine and training all look at the same 478 points
(468 mesh points + 10 iris points with `refine_landmarks=True`). Naming the groups once keeps everybody
looking at the same lip contour.

Left/right follow MediaPipe: LEFT_* is the *subject's* left, which is on the image's RIGHT for a frontal face.
Contours are listed in drawing order (closed polygons), starting at the corner nearest the image's left side
for the lips and at the outer corner for the eyes. All helpers accept (K, 2) or (N, K, 2) arrays in pixels.
Cheap to import: NumPy only.
"""
from __future__ import annotations

import numpy as np

NUM_LANDMARKS = 478  # 468 mesh points + 10 iris points (refine_landmarks=True)
NUM_MESH_LANDMARKS = 468

# Lips, closed contours. Outer: corner 61 -> lower lip (17 = bottom centre) -> corner 291 -> upper lip (0 = top).
LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
# Inner (the opening): corner 78 -> lower inner lip (14) -> corner 308 -> upper inner lip (13).
LIPS_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
MOUTH_CORNER_A, MOUTH_CORNER_B = 61, 291  # image-left and image-right outer corners of a frontal face
UPPER_LIP_INNER, LOWER_LIP_INNER = 13, 14
UPPER_LIP_OUTER, LOWER_LIP_OUTER = 0, 17

# Eyes, closed contours from the outer corner: lower lid first, then the upper lid.
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)  # image left
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)  # image right
RIGHT_EYE_OUTER, RIGHT_EYE_INNER = 33, 133
LEFT_EYE_OUTER, LEFT_EYE_INNER = 263, 362
RIGHT_IRIS = (468, 469, 470, 471, 472)  # centre first (only with refine_landmarks)
LEFT_IRIS = (473, 474, 475, 476, 477)

NOSE_TIP = 1
SUBNASALE = 2  # where the nose meets the upper lip
CHIN = 152
FOREHEAD = 10

# Face oval, closed, clockwise in the image from the top of the forehead (10), chin at 152.
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
             148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
# Lower part of the oval, image-left cheek (about nose-base height) round the chin to the image-right cheek.
JAW = (132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361)


def _pt(landmarks: np.ndarray, idx) -> np.ndarray:
    return np.asarray(landmarks)[..., idx, :]


def eye_centers(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(right_eye, left_eye) centres: the mean of each eye contour (works with or without iris points).

    The subject's right eye comes first; it is on the image's left for a frontal face.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    return lm[..., RIGHT_EYE, :].mean(axis=-2), lm[..., LEFT_EYE, :].mean(axis=-2)


def mouth_center(landmarks: np.ndarray) -> np.ndarray:
    """Mean of the outer lip contour."""
    return np.asarray(landmarks, dtype=np.float64)[..., LIPS_OUTER, :].mean(axis=-2)


def eye_corner_distance(landmarks: np.ndarray) -> np.ndarray:
    """Distance between the two outer eye corners: the face-size yardstick that does not move with the mouth."""
    return np.linalg.norm(_pt(landmarks, RIGHT_EYE_OUTER) - _pt(landmarks, LEFT_EYE_OUTER), axis=-1)


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """Inner-lip gap (13-14) divided by the outer eye-corner distance: ~0 closed, ~0.3-0.5 wide open.

    Scale-free, so the same threshold works for a 1080p close-up and a small face in a full-body shot.
    """
    gap = np.linalg.norm(_pt(landmarks, UPPER_LIP_INNER) - _pt(landmarks, LOWER_LIP_INNER), axis=-1)
    return gap / np.maximum(eye_corner_distance(landmarks), 1e-6)


def mouth_width(landmarks: np.ndarray) -> np.ndarray:
    """Corner-to-corner mouth width divided by the outer eye-corner distance (~0.5 neutral, larger when smiling)."""
    w = np.linalg.norm(_pt(landmarks, MOUTH_CORNER_A) - _pt(landmarks, MOUTH_CORNER_B), axis=-1)
    return w / np.maximum(eye_corner_distance(landmarks), 1e-6)


def lower_face_polygon(landmarks: np.ndarray) -> np.ndarray:
    """(P, 2) closed polygon of the region the compositor may replace: from just below the nose round the jaw.

    The top edge runs from the cheek at nose-base height through the subnasale (2), so the nose and eyes are
    never touched; the rest follows the jaw line. Accepts (K, 2) or (N, K, 2) (then returns (N, P, 2)).
    """
    lm = np.asarray(landmarks, dtype=np.float32)
    return np.concatenate([lm[..., JAW, :], lm[..., [SUBNASALE], :]], axis=-2)
