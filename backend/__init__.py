"""The engine: audio in → features → generator → compositor → sinks, on one clock (DESIGN.md §3)."""
