"""Starting the app as ``make app`` does and finding a browser to drive it: shared by the
browser test and the app benchmark."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Headless Debian chromium on a machine without a display or outside network.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]


def chromium_path() -> str | None:
    """``WORKBENCH_CHROMIUM``, else a chromium on PATH (``make chromium`` installs Debian's)."""
    return os.environ.get("WORKBENCH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def start_streamlit(script: str | Path, port: int, *, log: Path | None = None,
                    env: Mapping[str, str] | None = None) -> subprocess.Popen:
    """``streamlit run script`` as ``make app`` starts it (headless, local only), from the repository
    root; output to ``log`` (appended) or discarded."""
    command = [sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true",
               "--server.address", "localhost", "--server.port", str(port), "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", "none"]
    out = log.open("ab") if log is not None else subprocess.DEVNULL
    try:
        return subprocess.Popen(command, cwd=ROOT, env=dict(env) if env is not None else None, stdout=out,
                                stderr=subprocess.STDOUT)
    finally:
        if log is not None:
            out.close()


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    """Until the server at ``url`` answers its health check; an error if it exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"streamlit did not answer at {url} within {timeout} s")
