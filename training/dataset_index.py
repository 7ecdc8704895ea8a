"""Which clips a split contains: file lists (train.txt / val.txt) and a scan that skips bad clips.

Accepted layouts (docs/models.md §11): our `preprocess --train-dir T` (T/train.txt, T/val.txt, lines `<video>/<clip>`
relative to T), Rudrabha's LRS2 (`filelists/train.txt` with lines relative to the preprocessed root; only the
first whitespace-separated token counts) and primepake's (absolute clip folders, `test.txt` for validation,
`filelist/` or `filelists/`). A clip that is too short, has no audio or cannot be read is skipped with one
warning, never a crash an hour into training.
"""
from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from stream_wav2lip.errors import UserError
from training.clips import Clip, ClipSkipped, audio_seconds, scan_clip
from training.windows import FPS, MIN_CLIP_FRAMES

SPLIT_FILES = {"train": ("train.txt",), "val": ("val.txt", "test.txt")}
LIST_FOLDERS = ("", "filelists", "filelist")


def find_filelist(data_root: Path, split: str) -> Path | None:
    """T/train.txt, T/filelists/train.txt or T/filelist/train.txt (val: val.txt, then test.txt)."""
    for name in SPLIT_FILES[split]:
        for folder in LIST_FOLDERS:
            candidate = data_root / folder / name
            if candidate.is_file():
                return candidate
    return None


def read_filelist(list_path: Path, data_root: Path | None) -> list[Path]:
    """Clip folders named by a file list: absolute lines as they are, relative lines under data_root
    (or, if not found there, under the list's own folder)."""
    try:
        text = list_path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UserError(f"{list_path}: cannot read file list ({exc.strerror})") from None
    clips: list[Path] = []
    for line in text.splitlines():
        token = line.strip().split()[0] if line.strip() else ""
        if not token or token.startswith("#"):
            continue
        path = Path(token)
        if not path.is_absolute():
            base = data_root if data_root is not None else list_path.parent
            path = base / token
            if not path.is_dir() and (list_path.parent / token).is_dir():
                path = list_path.parent / token
        clips.append(path)
    return clips


@dataclass
class SplitIndex:
    """The usable clips of one split and what was left out (and why)."""

    split: str
    list_path: Path | None
    clips: list[Clip] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return sum(c.num_frames for c in self.clips)

    @property
    def hours(self) -> float:
        return self.num_frames / FPS / 3600.0

    @property
    def audio_hours(self) -> float:
        return sum(audio_seconds(c) for c in self.clips) / 3600.0

    def skip_reasons(self) -> Counter:
        return Counter(reason for _, reason in self.skipped)


def scan_split(data_root: Path | None, split: str, list_path: Path | None = None, *,
               min_frames: int = MIN_CLIP_FRAMES, warn: bool = True, progress: bool = False) -> SplitIndex:
    """Read the split's file list and scan every clip folder it names."""
    if list_path is None:
        if data_root is None:
            raise UserError(f"no data root and no --{split}-list given")
        if not data_root.is_dir():
            raise UserError(f"{data_root}: data folder not found")
        list_path = find_filelist(data_root, split)
        if list_path is None:
            if split == "train":
                raise UserError(f"{data_root}: no train.txt (looked in ., filelists/, filelist/); "
                                "write one with `stream-wav2lip preprocess VIDEO --train-dir {data_root}`")
            return SplitIndex(split, None)
    elif not list_path.is_file():
        raise UserError(f"{list_path}: file list not found")
    index = SplitIndex(split, list_path)
    paths = read_filelist(list_path, data_root)
    seen: set[Path] = set()
    iterator = paths
    if progress:
        from tqdm import tqdm

        iterator = tqdm(paths, desc=f"scanning {split}", unit="clip", leave=False)
    for path in iterator:
        if path in seen:  # primepake's example list repeats one clip; count it once
            continue
        seen.add(path)
        try:
            index.clips.append(scan_clip(path, min_frames))
        except ClipSkipped as reason:
            index.skipped.append((path, str(reason)))
            if warn:
                print(f"warning: {path}: skipped ({reason})", file=sys.stderr)
    return index
