"""Stopping the processes that tests start."""

from __future__ import annotations

import subprocess
from typing import Any


def stop(process: subprocess.Popen[Any] | None, timeout: float = 10.0) -> None:
    """Terminate `process` if it still runs, and kill it if it will not go."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)
