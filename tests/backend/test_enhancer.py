import numpy as np

from backend.compositor import Compositor
from backend.enhancer import make_enhancer
from backend.frames import FaceFrame
from tests.backend.test_compositor import _package


def test_missing_gfpgan_is_skipped_with_one_note(capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_gfpgan(name, *args, **kwargs):
        if name == "gfpgan":
            raise ImportError("no gfpgan here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_gfpgan)
    assert make_enhancer("gfpgan") is None and make_enhancer("gfpgan") is None
    assert capsys.readouterr().err.count("enhancer skipped") <= 1
    assert make_enhancer(None) is None and make_enhancer("none") is None


def test_enhancer_hook_runs_on_the_generated_face():
    pkg = _package()
    calls = []

    def brighten(face):
        calls.append(face.shape)
        return np.full_like(face, 250)

    face = np.full((96, 96, 3), 10, np.uint8)
    plain = Compositor(pkg, colour=False).compose(FaceFrame(0, 0, 0, face, blend=1.0))
    enhanced = Compositor(pkg, colour=False, enhancer=brighten).compose(FaceFrame(0, 0, 0, face, blend=1.0))
    assert calls == [(96, 96, 3)] and enhanced.sum() > plain.sum()
