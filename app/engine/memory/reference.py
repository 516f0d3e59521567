"""The reference paths: every shortcut an estimate takes, turned off.

An estimate skips what it can derive exactly: a generation's decode steps between the
ones that decide its peak (``generation.py``), and a training step's optimizer, whose
state and step temporaries are traced once over the parameters and added to one
forward and backward traced for every optimizer (``one_device.py``); a sharded step's
repeated blocks, extended from three shortened copies (``sharding.py``); it also reuses
traces across what-ifs that do not change them. Inside ``reference_traces()`` every
step is traced whole, with its own optimizer, and nothing is reused: what the tests
and the benchmarks compare the shortcuts with, report for report.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

_REFERENCE = {"on": False}


@contextlib.contextmanager
def reference_traces() -> Iterator[None]:
    """Estimates inside trace every step whole, with no shortcut and no reuse."""
    before = _REFERENCE["on"]
    _REFERENCE["on"] = True
    try:
        yield
    finally:
        _REFERENCE["on"] = before


def tracing_everything() -> bool:
    return _REFERENCE["on"]
