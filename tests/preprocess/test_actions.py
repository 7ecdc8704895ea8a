"""Adding an action clip to a real avatar package."""
from __future__ import annotations

import json
import shutil

import pytest


@pytest.mark.slow
def test_add_a_real_action_and_play_it(small_avatar, media_dir, tmp_path):
    from backend.action_walk import with_actions
    from backend.idle_walk import make_walk
    from preprocess.actions import add_action
    from preprocess.package import AvatarPackage
    from stream_wav2lip.errors import UserError

    root = shutil.copytree(small_avatar, tmp_path / "avatar")  # the fixture is shared: work on a copy
    clip = media_dir / "video-retalking__examples_face_2.mp4"  # the same shot, all 5 s of it
    folder = add_action(root, "talk", clip, workers=1)
    action = AvatarPackage.open(folder)
    assert action.frame_count > 100 and action.face_size == AvatarPackage.open(root).face_size
    assert json.loads((root / "manifest.json").read_text())["actions"]["talk"]["frames"] == action.frame_count
    with pytest.raises(UserError, match="exists"):
        add_action(root, "talk", clip)
    pkg = AvatarPackage.open(root)
    walk = with_actions(make_walk(pkg, "auto"), pkg)
    seg = walk.cue("talk")
    shown = [walk.frame_at(k) for k in range(seg.first, seg.end + 1)]
    assert [s.index for s in shown[:-1]] == list(range(seg.entry, seg.exit_from + 1))
    assert shown[-1].clip is None and 0 <= shown[-1].index < pkg.frame_count
    assert not any(p.name.startswith(".tmp") for p in (root / "actions").iterdir())
