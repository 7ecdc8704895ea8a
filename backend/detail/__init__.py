"""The detail stage (issue 17): real high-frequency detail from the avatar's own footage for faces a
low-resolution network drew. `library` builds and caches the per-avatar exemplars; `stage` applies them."""
from backend.detail.library import ExemplarLibrary, load_or_build
from backend.detail.stage import DetailStage, detail_size, needs_detail

__all__ = ["DetailStage", "ExemplarLibrary", "detail_size", "load_or_build", "needs_detail"]
