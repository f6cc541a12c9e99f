"""Shared helpers of the benchmarks: the peak anonymous-memory sampler.

``PeakAnon()`` records RssAnon (``/proc/self/status``) at construction as its base,
then samples it every 5 ms in a daemon thread; ``stop()`` takes one last sample and
returns the highest level seen above the base, in MB. Linux only (0 elsewhere).
"""

from __future__ import annotations

import threading
import time


def anon_kb() -> int:
    """Current RssAnon of this process in KB (0 where /proc is unavailable)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class PeakAnon:
    """Highest RssAnon (KB) seen since construction, sampled every ``interval`` s in a thread."""

    def __init__(self, interval: float = 0.005):
        self.base = self.peak = anon_kb()
        self._interval = interval
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, anon_kb())
            time.sleep(self._interval)

    def stop(self) -> float:
        """Stop sampling; MB of the highest level above the base."""
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, anon_kb())
        return (self.peak - self.base) / 1024
