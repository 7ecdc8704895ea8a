"""stream-wav2lip: a real-time lip-sync avatar for live streamers.

This package only holds the command-line dispatcher and small cross-cutting helpers;
the real work lives in the sibling packages models/, preprocess/, backend/, training/, obs_plugin/.
"""
__version__ = "0.1.0"
