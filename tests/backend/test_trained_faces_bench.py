"""bench/trained_faces.py, the GPU half of the detail benchmark on a trained network: it runs once per GPU
session (bench/gpu_check.sh), so its drawing and its file format are kept working here, on the CPU, with the
deterministic test weights and a tiny training-set layout."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def _tiny_set(root: Path) -> Path:
    """Two clips in `prepare`'s layout: lib/ and test/ folders of 96-px faces with 16 kHz audio, meta.json."""
    from preprocess.trainset import write_pcm16

    rng = np.random.default_rng(3)
    meta = {}
    for c, (lib, test) in enumerate(((6, 4), (5, 3))):
        stem = f"clip{c}"
        for part, count in (("lib", lib), ("test", test)):
            folder = root / stem / part
            folder.mkdir(parents=True)
            for k in range(count):
                face = cv2.GaussianBlur(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8), (0, 0), 2)
                cv2.imwrite(str(folder / f"{k}.jpg"), face)
            write_pcm16(folder / "audio.wav", rng.normal(0, 3000, 640 * count + 3200).astype("<i2"))
        meta[stem] = {"frames": lib + test, "split": lib, "size": 200, "probe": [0, 2, lib - 1]}
    (root / "meta.json").write_text(json.dumps(meta))
    return root


def test_draw_writes_every_held_out_frame_and_the_probe_losslessly(tmp_path: Path):
    from bench.detail import probe_frames
    from bench.trained_faces import draw, load_drawings
    from models.testing import deterministic_state_dict, save_reference_checkpoint

    data = _tiny_set(tmp_path / "set")
    ckpt = save_reference_checkpoint(deterministic_state_dict("wav2lip96"), tmp_path / "w96.pth",
                                     with_optimizer=False)
    out = tmp_path / "drawn.npz"
    draw(data, ckpt, out, device="cpu")
    assert out.is_file() and not list(tmp_path.glob("*.part.npz"))
    drawings = load_drawings(out)
    assert sorted(drawings) == ["clip0", "clip1"]
    assert drawings["clip0"]["test"].shape == (4, 96, 96, 3) and drawings["clip1"]["test"].shape == (3, 96, 96, 3)
    assert drawings["clip0"]["probe"].shape == (3, 96, 96, 3) and drawings["clip0"]["probe_frames"] == [0, 2, 5]
    assert drawings["clip0"]["test"].dtype == np.uint8
    # the stored faces are exactly what the generator drew (PNG is lossless)
    from backend.generators.wav2lip import Wav2LipGenerator
    from bench.trained_faces import _faces, _windows

    gen = Wav2LipGenerator(ckpt, device="cpu")
    folder = data / "clip1" / "test"
    again = gen.forward(_faces(folder, range(3)), _windows(folder, 3))
    np.testing.assert_array_equal(drawings["clip1"]["test"], again)
    assert probe_frames(100) == [0, 14, 28, 42, 57, 71, 85, 99]


def test_mistimed_draws_the_lower_half_late_and_the_probe_on_time(synthetic_avatar: Path, tmp_path: Path,
                                                                  monkeypatch):
    """`mistimed`: the CPU stand-in for a network's imperfect lip-sync (the lower half `shift` frames late)."""
    import bench.lipsync_quality as lq
    from backend.detail import detail_size
    from bench.detail import CROP, SPLIT, drawn, real_crop
    from bench.trained_faces import load_drawings, mistimed
    from preprocess.package import AvatarPackage

    pkg = AvatarPackage.open(synthetic_avatar)
    monkeypatch.setattr(lq, "talking_clips", lambda media: [Path("synthetic.mp4")])
    monkeypatch.setattr(lq, "package_for", lambda clip, work: pkg)
    n, split, size = pkg.frame_count, int(round(SPLIT * pkg.frame_count)), detail_size(pkg, CROP, 96)
    faces = [drawn(real_crop(pkg, j, size)[0], 96) for j in range(n)]
    for shift in (0, 2):
        out = tmp_path / f"late{shift}.npz"
        mistimed(tmp_path, tmp_path, out, shift)
        got = load_drawings(out)["synthetic"]
        assert got["test"].shape == (n - split, 96, 96, 3) and not list(tmp_path.glob("*.part.npz"))
        np.testing.assert_array_equal(got["probe"], np.stack([faces[j] for j in got["probe_frames"]]))
        first, late = got["test"][0].astype(int), faces[min(n - 1, split + shift)].astype(int)
        assert np.abs(first[:40] - faces[split][:40]).max() <= 1  # the upper half on time
        assert np.abs(first[60:] - late[60:]).max() <= 1  # the lower half `shift` frames late
    assert not np.array_equal(load_drawings(tmp_path / "late0.npz")["synthetic"]["test"],
                              load_drawings(tmp_path / "late2.npz")["synthetic"]["test"])
