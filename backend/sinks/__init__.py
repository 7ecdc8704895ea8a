"""Sinks: where finished (VideoFrame, AudioOutFrame) pairs go (mp4 file, PNG folder; serve adds the rings)."""
