"""Landmark index groups must match MediaPipe's own FaceMesh connection sets (read from the installed wheel)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from preprocess import landmarks as L
from preprocess.synthetic import mouth_openings, synthetic_landmarks


def _mediapipe_connections():
    """Load face_mesh_connections.py by path: importing `mediapipe` itself takes seconds."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("mediapipe not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "python" / "solutions" / "face_mesh_connections.py"
    mod_spec = importlib.util.spec_from_file_location("_fm_connections", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


def _edges(contour):
    return {frozenset(e) for e in zip(contour, contour[1:] + contour[:1])}


def test_contours_match_mediapipe_connections():
    fm = _mediapipe_connections()
    lips = {frozenset(e) for e in fm.FACEMESH_LIPS}
    assert _edges(L.LIPS_OUTER) | _edges(L.LIPS_INNER) == lips
    assert _edges(L.LEFT_EYE) == {frozenset(e) for e in fm.FACEMESH_LEFT_EYE}
    assert _edges(L.RIGHT_EYE) == {frozenset(e) for e in fm.FACEMESH_RIGHT_EYE}
    assert _edges(L.FACE_OVAL) == {frozenset(e) for e in fm.FACEMESH_FACE_OVAL}
    assert set(L.JAW) <= set(L.FACE_OVAL) and L.CHIN in L.JAW
    assert {i for e in fm.FACEMESH_LEFT_IRIS for i in e} == set(L.LEFT_IRIS[1:])
    assert {i for e in fm.FACEMESH_RIGHT_IRIS for i in e} == set(L.RIGHT_IRIS[1:])


def test_measurements_follow_the_mouth():
    lm = synthetic_landmarks(30, 320, 240)
    opening = L.mouth_opening(lm)
    assert opening.shape == (30,)
    assert np.corrcoef(opening, mouth_openings(30))[0, 1] > 0.99
    assert L.mouth_opening(lm[0]).shape == ()
    width = L.mouth_width(lm)
    assert np.all((width > 0.3) & (width < 1.0))
    right, left = L.eye_centers(lm)
    assert np.all(right[:, 0] < left[:, 0])  # subject's right eye is on the image left


def test_lower_face_polygon_is_below_the_eyes_and_contains_the_mouth():
    import cv2

    lm = synthetic_landmarks(3, 320, 240)
    poly = L.lower_face_polygon(lm)
    assert poly.shape == (3, len(L.JAW) + 1, 2)
    right, left = L.eye_centers(lm[0])
    assert poly[0][:, 1].min() > max(right[1], left[1])
    inside = cv2.pointPolygonTest(poly[0].astype(np.float32), tuple(map(float, L.mouth_center(lm[0]))), False)
    assert inside > 0
