"""Take docs/obs-panel.png: the source's properties dialog in real OBS under Xvfb, with the real backend.

    .venv/bin/python tests/e2e/panel_screenshot.py [OUT.png]

Builds the demo avatar (scikit-image's public-domain `astronaut`, as `stream-wav2lip demo` does), starts OBS with a
private config, presses Start over obs-websocket, opens the dialog with xdotool and grabs it with ffmpeg.
Not a test; run it by hand when the panel changes.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

from obs_harness import REPO, ObsSession, _xdotool  # noqa: E402


def main(out: Path) -> int:
    from backend.demo import build_demo_avatar

    tmp = Path(tempfile.mkdtemp(prefix="s2l-panel-"))
    pkg = build_demo_avatar(tmp / "demo", progress=False)
    name = "Avatar"
    sess = ObsSession([{"name": name, "settings": {"avatars_root": str(pkg.parent), "avatar": pkg.name}}],
                      workdir=tmp / "obs", screen="1280x1400x24")
    try:
        sess.start()
        sess.client.press_input_properties_button(name, "start")
        sess.wait_status(name, "running", timeout=180)
        time.sleep(2)
        _xdotool(sess, "mousemove", "284", "532", "click", "1")  # the source in the Sources dock
        time.sleep(0.5)
        _xdotool(sess, "mousemove", "268", "451", "click", "1")  # "Properties"
        win = sess.wait_for(lambda: _xdotool(sess, "search", "--name", f"Properties for '{name}'").split(), 10,
                            what="the properties dialog")[0]
        _xdotool(sess, "windowmove", win, "0", "0")
        _xdotool(sess, "windowsize", win, "780", "1180")
        _xdotool(sess, "mousemove", "1250", "1390")
        time.sleep(2.5)
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "x11grab", "-video_size", "780x1180",
                        "-i", f":{sess.display}+0,0", "-frames:v", "1", str(out)], check=True, env=sess.env)
        print(f"wrote {out}; status: {sess.status(name)}")
    finally:
        sess.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "obs-panel.png"))
