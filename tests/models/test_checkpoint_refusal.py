"""A checkpoint that torch.load(weights_only=True) refuses because it carries code or objects says so -- "refused:
contains pickled code/objects (<what>)" -- and is never called corrupt; a damaged file is still "not readable"."""
from __future__ import annotations

import builtins
import os

import pytest
import torch

import models
from models.checkpoint import read_checkpoint, weights_only_refusal
from models.testing import deterministic_state_dict
from stream_wav2lip.errors import UserError


class CustomConfig:
    """A plain object saved next to the weights (what many training scripts do by accident)."""

    def __init__(self):
        self.lr = 1e-4


def make_schedule():  # a function pickled by reference
    return 0


class _OpensAFile:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


class _CallsSystem:
    def __reduce__(self):
        return (os.system, ("true",))


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("payload,named", [
    (lambda tmp: CustomConfig(), "CustomConfig"),
    (lambda tmp: make_schedule, "make_schedule"),
    (lambda tmp: _OpensAFile(tmp / "pwned.txt"), "open"),
    (lambda tmp: _CallsSystem(), "system"),  # its module is on torch's block list: another message
    (lambda tmp: torch.nn.Linear(2, 2), "torch.nn.modules.linear.Linear"),  # a whole module, not a state dict
])
def test_checkpoint_with_pickled_code_or_objects_is_refused_by_name(tmp_path, payload, named, legacy):
    torch.set_num_threads(1)
    path = tmp_path / "with_objects.pth"
    state = deterministic_state_dict("nlayer_disc")
    torch.save({"state_dict": state, "global_step": 3, "extra": payload(tmp_path)}, path,
               _use_new_zipfile_serialization=not legacy)
    with pytest.raises(UserError) as err:
        models.load_checkpoint(path)
    message = str(err.value)
    assert message.startswith(f"{path}: refused: contains pickled code/objects ("), message
    assert named in message and "corrupt" not in message and "not a readable" not in message
    assert not (tmp_path / "pwned.txt").exists(), "nothing in the file ran"


@pytest.mark.parametrize("content", [b"garbage" * 100, b"\x80\x02" + bytes(range(256)) * 4, b""])
def test_damaged_files_are_still_not_readable_not_refused(tmp_path, content):
    path = tmp_path / "broken.pth"
    path.write_bytes(content)
    with pytest.raises(UserError) as err:
        read_checkpoint(path)
    assert "not a readable PyTorch checkpoint" in str(err.value) and "refused" not in str(err.value)


def test_refusal_messages_of_torch_are_recognised():
    assert weights_only_refusal("WeightsUnpickler error: Unsupported global: GLOBAL a.B was not an allowed "
                                "global by default.") == "a.B"
    assert weights_only_refusal("Trying to load unsupported GLOBAL posix.system whose module posix is "
                                "blocked.") == "posix.system"
    assert weights_only_refusal("Trying to call reduce for unrecognized function <built-in function print>"
                                ) == "<built-in function print>"
    assert weights_only_refusal("WeightsUnpickler error: \n\nUnsupported operand 103\n\n") is None
