"""Loaded beside a variant by the bench: CPU time in the garbage collector, per request.

The collector runs when allocations have piled up, so its cost lands on whatever
code runs then, not on the hook that allocated: sampling the hooks misses it.
"""

from __future__ import annotations

import gc
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mitmproxy import ctx

if TYPE_CHECKING:
    from mitmproxy.addonmanager import Loader
    from mitmproxy.http import HTTPFlow


class GcTime:
    def __init__(self) -> None:
        self.runs = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self.responses = 0
        self._started = 0.0
        gc.callbacks.append(self.on_collection)

    def load(self, loader: Loader) -> None:
        loader.add_option("gc_time_out", str, "", "Write the collector's CPU time here at exit.")

    def running(self) -> None:  # count from here: start-up is not traffic
        self.runs, self.seconds, self.responses = [0, 0, 0], [0.0, 0.0, 0.0], 0

    def on_collection(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.thread_time()  # CPU time: the core is shared by every variant
        else:
            self.runs[info["generation"]] += 1
            self.seconds[info["generation"]] += time.thread_time() - self._started

    def response(self, flow: HTTPFlow) -> None:
        self.responses += 1

    def done(self) -> None:
        if ctx.options.gc_time_out:
            Path(ctx.options.gc_time_out).write_text(
                json.dumps(
                    {"responses": self.responses, "runs": self.runs, "seconds": self.seconds}
                )
            )


addons = [GcTime()]
