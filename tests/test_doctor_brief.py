"""`doctor --brief` (what install.sh and install.ps1 print at their end) is the table alone; plain `doctor`
adds a summary and, for anything missing, what to do about it."""
from __future__ import annotations

from stream_wav2lip import doctor
from stream_wav2lip.cli import main


def test_brief_is_the_table_and_full_adds_what_to_fix(monkeypatch, capsys):
    rows = [("python", True, "3.11"), ("ffmpeg", False, "missing: needed for audio formats"),
            ("weird", False, "missing")]
    monkeypatch.setattr(doctor, "checks", lambda: rows)
    assert main(["doctor", "--brief"]) == 0
    brief = capsys.readouterr().out.splitlines()
    assert len(brief) == len(rows) and "ffmpeg" in brief[1]
    assert main(["doctor"]) == 0
    full = capsys.readouterr().out
    assert full.startswith("\n".join(brief)) and "1 of 3 checks ok" in full
    assert "ffmpeg: install FFmpeg" in full and "weird: re-run ./install.sh" in full
