"""The weightless `mouth` engine: real mouth images from the avatar's own footage, chosen to match speech."""
from __future__ import annotations

from backend.mouth.generator import MouthGenerator

__all__ = ["MouthGenerator"]
