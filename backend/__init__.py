"""The engine: audio in → features → generator → compositor → sinks, on one clock.

See docs/architecture.md, "The engine and its two drivers".
"""
