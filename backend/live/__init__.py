"""`serve`'s driver of the engine: one clock, a render worker and a publisher (loop.py), the clock itself and
its virtual twin for tests (clock.py), the speech queue feeding the engine (feeder.py), counters (stats.py),
and the one command surface the HTTP API and the shared-memory mailbox share (commands.py).

Nothing here decides what a frame shows: that is backend/engine.py, the same engine `render` drives.
"""
