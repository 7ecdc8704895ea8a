"""`stream-wav2lip inspect` on checkpoints made by the tests."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from models import cli, testing
from stream_wav2lip.cli import main


def run_inspect(*argv: str) -> int:
    """models.cli alone (independent of the other sub-commands' modules)."""
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(list(argv)))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "disc_checkpoint_step000001234.pth"
    return testing.save_reference_checkpoint(testing.deterministic_state_dict("nlayer_disc"), path,
                                             global_step=1234, global_epoch=3)


def test_inspect_text(checkpoint, capsys):
    assert run_inspect(str(checkpoint)) == 0
    out = capsys.readouterr().out
    for expected in ("nlayer_disc", "discriminator", "384x384", "2,765,633", "1,234", "yes (module. prefix)"):
        assert expected in out


def test_inspect_json(checkpoint, capsys):
    assert run_inspect("--json", str(checkpoint)) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["variant"] == "nlayer_disc" and record["global_step"] == 1234 and record["has_optimizer"]


def test_inspect_bad_file_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"nope")
    assert main(["inspect", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("stream-wav2lip inspect: error:") and "bad.pth" in err and "\n" not in err


@pytest.mark.slow
def test_inspect_console_script(checkpoint):
    exe = Path(sys.executable).with_name("stream-wav2lip")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "stream_wav2lip"]
    result = subprocess.run(cmd + ["inspect", str(checkpoint)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "nlayer_disc" in result.stdout
