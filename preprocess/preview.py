"""preview.jpg: a contact sheet that shows at a glance whether tracking worked.

Each tile is a sampled frame with the body_face box (green), the upright head square (blue), the head_face box
mapped back onto the frame (yellow) and the lip landmarks (red); frames without a face say NO FACE. A package
with a matte shows each tile beside the same frame over a grey checkerboard through its matte, the way image
editors show transparency: holes in the face and background left around the person are seen at a glance.
"""
from __future__ import annotations

import cv2
import numpy as np

from preprocess import landmarks as L
from preprocess.geometry import Geometry, apply_affine, invert_affine

TILE_WIDTH = 320
COLUMNS = 4


def sample_indices(frame_count: int, tiles: int = 12) -> list[int]:
    """Evenly spread frames, always including the first and the last."""
    if frame_count <= tiles:
        return list(range(frame_count))
    return sorted(set(np.linspace(0, frame_count - 1, tiles).round().astype(int).tolist()))


def _quad(points: np.ndarray, scale: float) -> np.ndarray:
    return np.round(np.asarray(points) * scale).astype(np.int32).reshape(-1, 1, 2)


def draw_tile(frame: np.ndarray, i: int, geometry: Geometry, landmarks: np.ndarray, valid: bool,
              head_size: int) -> np.ndarray:
    h, w = frame.shape[:2]
    scale = TILE_WIDTH / w
    tile = cv2.resize(frame, (TILE_WIDTH, max(1, int(round(h * scale)))), interpolation=cv2.INTER_AREA)
    inv = invert_affine(geometry.head_affine[i])
    s = float(head_size)
    head_corners = apply_affine(inv, np.array([[0, 0], [s, 0], [s, s], [0, s]]))
    x1, y1, x2, y2 = geometry.head_face_box[i]
    face_corners = apply_affine(inv, np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]]))
    bx1, by1, bx2, by2 = geometry.body_face_box[i]
    body_corners = np.array([[bx1, by1], [bx2, by1], [bx2, by2], [bx1, by2]])
    cv2.polylines(tile, [_quad(head_corners, scale)], True, (255, 120, 0), 1, cv2.LINE_AA)
    cv2.polylines(tile, [_quad(body_corners, scale)], True, (0, 200, 0), 1, cv2.LINE_AA)
    cv2.polylines(tile, [_quad(face_corners, scale)], True, (0, 220, 255), 1, cv2.LINE_AA)
    for idx in L.LIPS_OUTER + L.LIPS_INNER:
        x, y = landmarks[idx] * scale
        cv2.circle(tile, (int(round(x)), int(round(y))), 1, (0, 0, 255), -1)
    label = f"{i}" if valid else f"{i} NO FACE"
    cv2.putText(tile, label, (5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(tile, label, (5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                (255, 255, 255) if valid else (0, 0, 255), 1, cv2.LINE_AA)
    return tile


def contact_sheet(tiles: list[np.ndarray]) -> np.ndarray:
    """Tiles (same size) in rows of COLUMNS, black where a row is short."""
    th, tw = tiles[0].shape[:2]
    rows = (len(tiles) + COLUMNS - 1) // COLUMNS
    sheet = np.zeros((rows * th, min(len(tiles), COLUMNS) * tw, 3), np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, COLUMNS)
        sheet[r * th:(r + 1) * th, c * tw:(c + 1) * tw] = tile[:th, :tw]
    return sheet


CHECKER = 8  # checkerboard cell, tile pixels


def checkerboard(height: int, width: int, cell: int = CHECKER) -> np.ndarray:
    """Light/dark grey checkerboard, BGR uint8."""
    ys, xs = np.indices((height, width))
    grey = np.where(((ys // cell) + (xs // cell)) % 2 == 0, 204, 153).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def matte_tile(frame: np.ndarray, alpha: np.ndarray, i: int) -> np.ndarray:
    """The frame over a checkerboard through its matte, TILE_WIDTH wide, labelled."""
    h, w = frame.shape[:2]
    size = (TILE_WIDTH, max(1, int(round(h * TILE_WIDTH / w))))
    small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    a = cv2.resize(alpha, size, interpolation=cv2.INTER_AREA).astype(np.float32)[:, :, None] * (1.0 / 255.0)
    board = checkerboard(size[1], size[0]).astype(np.float32)
    tile = np.round(small * a + board * (1.0 - a)).astype(np.uint8)
    label = f"{i} matte"
    cv2.putText(tile, label, (5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(tile, label, (5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def paired_sheet(tiles: list[np.ndarray], matte_tiles: list[np.ndarray]) -> np.ndarray:
    """contact_sheet of (tracking tile, matte tile) pairs side by side, COLUMNS // 2 pairs a row."""
    return contact_sheet([t for pair in zip(tiles, matte_tiles) for t in pair])
