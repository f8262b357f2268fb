"""Peak memory (RSS high-water mark) of running a function, in a fresh forked process.

The figure is the steady-state working set of the call: the child runs it once to warm up
(torch initializes kernels and pools lazily, tens of MB that are the runtime's, not the
model's), returns the freed heap to the OS, then measures a second run.

`tracemalloc` cannot see torch's allocator, and the high-water mark of a long-lived process
remembers every earlier peak. So the work runs in a forked child that resets its own mark
(`/proc/self/clear_refs` ← 5, Linux ≥ 4.0), reads its RSS, runs, and reports `VmHWM`. The child
inherits the model's tensors already resident, so the figure is the growth above them: the
activations, workspaces, gradients and optimizer state the call allocates.

Library code the call pages in for the first time (file-backed pages: forked children do not
inherit the parent's page-table entries for them) is not memory the model uses; its growth is
subtracted. The child runs torch with 1 thread: forking after OpenMP has started is only safe
that way.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import multiprocessing as mp
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from slimkit.errors import SlimkitError

_STATUS_FIELDS = ("VmRSS:", "VmHWM:", "RssFile:")


@dataclass(frozen=True)
class MemoryPeak:
    baseline_bytes: int  # RSS of the child just before the call
    peak_bytes: int  # RSS high-water mark during the call
    code_bytes: int  # file-backed pages (library code) first touched by the call
    threads: int = 1

    @property
    def increase_bytes(self) -> int:
        """Memory the call allocated at its peak: RSS growth less library code paged in."""
        return max(0, self.peak_bytes - self.baseline_bytes - self.code_bytes)


def _status_bytes() -> dict[str, int]:
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(_STATUS_FIELDS):
                key, amount, _unit = line.split()
                values[key.rstrip(":")] = int(amount) * 1024
    return values


def _release_free_heap() -> None:
    """Hand the heap's free pages back to the OS, so the call's allocations show as RSS growth
    instead of silently reusing pages the parent freed (which a fork inherits resident)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _child(fn: Callable[[], Any], conn: Any) -> None:
    try:
        torch.set_num_threads(1)
        fn()  # warm-up: one-time runtime set-up (kernel JIT, thread pools) is not the model's
        _release_free_heap()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS
        before = _status_bytes()
        fn()
        after = _status_bytes()
        code = max(0, after["RssFile"] - before["RssFile"])
        conn.send(("ok", (before["VmRSS"], after["VmHWM"], code)))
    except BaseException:  # report anything back; the parent turns it into an error
        conn.send(("error", traceback.format_exc().strip().splitlines()[-1]))
    finally:
        conn.close()


def peak_memory(fn: Callable[[], Any], *, timeout_s: float = 300.0) -> MemoryPeak:
    """Run `fn()` in a forked child and return its RSS baseline and high-water mark."""
    if not os.path.exists("/proc/self/clear_refs"):
        raise SlimkitError("peak memory needs Linux's /proc/self/clear_refs; not available here")
    ctx = mp.get_context("fork")
    parent_conn, child_conn = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(fn, child_conn), daemon=True)
    proc.start()
    child_conn.close()
    try:
        if not parent_conn.poll(timeout_s):
            raise SlimkitError(f"memory probe did not finish in {timeout_s:.0f} s; killed it")
        status, payload = parent_conn.recv()
    except EOFError:
        raise SlimkitError(
            f"memory probe died (exit code {proc.exitcode}): out of memory?"
        ) from None
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
    if status != "ok":
        raise SlimkitError(f"memory probe failed: {payload}")
    baseline, peak, code = payload
    return MemoryPeak(baseline_bytes=baseline, peak_bytes=peak, code_bytes=code)
