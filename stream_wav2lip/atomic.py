"""Write files and folders under a temporary name, rename when complete.

Nothing the user already has is ever replaced by a half-written result: a crash or a bad input
leaves at most a `.tmp-…` sibling, which the next run removes.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary file path beside `final`; on success rename it over `final`.

    On an exception the temporary file is removed and `final` is untouched.
    `suffix` keeps the extension for writers that pick a format from it (e.g. ".mp4").
    """
    final = Path(final)
    if not final.parent.is_dir():
        from stream_wav2lip.errors import UserError

        raise UserError(f"{final}: output folder {final.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{final.name}.", suffix=suffix or final.suffix, dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside `final`; on success rename it to `final` (replacing an old one)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}.", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".old-{final.name}.{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
