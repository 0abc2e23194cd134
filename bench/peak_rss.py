"""Run a command and measure its own peak resident memory.

Why not `getrusage(RUSAGE_CHILDREN).ru_maxrss`: Linux carries the high-water mark across
fork+exec, so a child forked from a benchmark that holds a model or a thousand test images in
memory "peaks" at the parent's size before it has run a line. /proc/PID/status VmHWM belongs to
the memory map the exec created, so it is the child's own; it is polled until the child exits.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Sequence
from typing import Any


def _vm_hwm_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def run_with_peak_rss(
    cmd: Sequence[str], poll_s: float = 0.05, **popen: Any
) -> tuple[subprocess.CompletedProcess[str], float]:
    """(completed process with text stdout/stderr, peak RSS in MB)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    peak = [0]

    def watch() -> None:
        while proc.poll() is None:
            kb = _vm_hwm_kb(proc.pid)
            if kb:
                peak[0] = max(peak[0], kb)
            time.sleep(poll_s)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    out, err = proc.communicate()
    t.join()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err), peak[0] / 1024
