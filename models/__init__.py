"""Networks (every reference Wav2Lip / SyncNet / discriminator variant), checkpoint loading, audio front-end.

Public API: `VARIANTS`, `build(variant)`, `load_checkpoint(path, device)`, `identify_variant(state_dict)`,
and `models.audio`. torch is imported lazily so that `models.audio` and the CLI stay cheap to import.
"""
from __future__ import annotations

from typing import Any

__all__ = ["VARIANTS", "build", "load_checkpoint", "identify_variant", "CheckpointInfo"]

_LAZY = {
    "VARIANTS": "models.variants",
    "build": "models.variants",
    "load_checkpoint": "models.checkpoint",
    "identify_variant": "models.checkpoint",
    "CheckpointInfo": "models.checkpoint",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module_name), name)
