"""The shared-memory protocol between the backend (`stream-wav2lip serve`) and its readers (the OBS plugin,
`say`, tests): segment names, the two frame rings, the control/status channel and stale-segment reclaiming.

Why a package of its own: both sides must agree on every byte, so the protocol is written once, here. It
uses only the standard library and numpy because it is imported inside OBS's own embedded Python (the
plugin puts the repository root on `sys.path`), and it imports nothing from `backend` or `obs_plugin`.
The same description, with the reasons behind it, is in docs/architecture.md, section "Shared-memory
protocol".

Segments of session S (Linux: files in /dev/shm; Windows: named mappings of the same name):

- ``s2l_S_video``  video ring, BGRA frames          (`layout`, `reader`, `writer`)
- ``s2l_S_audio``  audio ring, PCM blocks            (same)
- ``sm_s2l_S_ctl`` status, JSON, written by the backend    (`control`)
- ``sm_s2l_S_cmd`` command mailbox, JSON, written by clients (`control`, `client`)

Ring header (4096 bytes, little-endian), both rings::

    0  4s  magic            b"S2LV" (video) / b"S2LA" (audio)
    4  u32 layout version   1
    8  u32 word 0           video: width                audio: sample_rate (Hz)
    12 u32 word 1           video: height               audio: channels
    16 u32 word 2           video: stride (bytes/row)   audio: frames_per_block (max samples per channel)
    20 u32 word 3           video: pixel_format         audio: sample_format (1 = float32, 2 = s16)
                                   (1 = BGRA8)
    24 u32 slot count N
    28 u32 reserved
    32 u64 slot size in bytes (a multiple of 4096)
    40 u64 published        slots published so far; the newest is in slot (published - 1) mod N
    48 u64 heartbeat        writer's CLOCK_MONOTONIC ns, refreshed at least every 100 ms
    56 u64 writer pid
    64 ... zero up to 4096

Slot i at 4096 + i * slot_size: a 64-byte slot header, then the payload at offset 64::

    0  u64 seqlock          odd while written, even when stable
    8  i64 pts_ns           presentation time on CLOCK_MONOTONIC (the clock libobs uses)
    16 u64 index            video: avatar frame index   audio: frames (samples per channel) in this block
    24 u32 flags            bit 0 = speech (video: generated mouth shown; audio: utterance audio),
                            bit 1 = repeat (video: the previous image again, the renderer missed this pts)
    28 u32 reserved
    32 u64 sequence number  0-based position of this slot's content in the stream (published - 1 at write time)
    40 ... zero up to 64

Video payload: height x stride bytes of BGRA. Audio payload: frames x channels interleaved samples.

A writer publishes a slot as: seqlock odd, payload, slot header, seqlock even, then ``published`` + 1 and a
fresh heartbeat; it never waits. A reader accepts a copy only if the seqlock was even and unchanged around the
copy and the slot's sequence number is the one it asked for. The control format is in `control`; the
liveness rule that decides when a segment may be reclaimed is in `liveness`.
"""
from __future__ import annotations

from shm_protocol.client import ControlClient
from shm_protocol.control import (COMMAND_SIZE, COMMANDS, MAILBOX_KEEP, STATES, STATUS_KEYS, STATUS_SIZE, OwnedSegment,
                                  decode, encode, load, read_segment, reclaim_control_or_raise, status_is_alive, store,
                                  write_segment)
from shm_protocol.layout import (AUDIO_MAGIC, FLAG_REPEAT, FLAG_SPEECH, HEADER_SIZE, LAYOUT_VERSION, PAGE,
                                 PIXFMT_BGRA8, SAMPLE_F32, SAMPLE_S16, SLOT_HEADER_SIZE, VIDEO_MAGIC, RingHeader, Slot,
                                 audio_header, pack_header, unpack_header, video_header)
from shm_protocol.liveness import HEARTBEAT_STALE_NS, monotonic_ns, pid_alive, writer_is_stale
from shm_protocol.names import (audio_name, command_segment, session_from_label, status_segment, valid_session,
                                video_name)
from shm_protocol.reader import RingReader
from shm_protocol.segments import (create_untracked, segment_exists, session_segments, unlink_name,
                                   unlink_session_segments, untrack)
from shm_protocol.writer import RingWriter, reclaim_ring_or_raise

# Every module in import order (dependencies first): the OBS plugin reloads them in this order when the
# user presses Tools -> Scripts -> Reload.
MODULES = ("shm_protocol.names", "shm_protocol.liveness", "shm_protocol.segments", "shm_protocol.layout",
           "shm_protocol.reader", "shm_protocol.writer", "shm_protocol.control", "shm_protocol.client",
           "shm_protocol")
