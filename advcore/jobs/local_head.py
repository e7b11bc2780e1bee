"""A throwaway Ray head on 127.0.0.1, for trying AdvLab's cluster path on one machine (its tests and
`benchmarks/cluster_overhead.py` use it): `ray start --head --block` with every port its own and a
short temporary folder, stopped by its own pid when the block ends.

Needs requirements-cluster.txt; the local path never imports this module.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

from ray.job_submission import JobSubmissionClient

START_SECONDS = 120.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def local_head(cpus: int = 2, env: dict | None = None) -> Iterator[str]:
    """Yields the head's HOST:PORT once its Jobs API answers; `env` is the head's environment (by
    default this process's, less Ray's and AdvLab's own variables)."""
    env = env or {key: value for key, value in os.environ.items() if not key.startswith(("RAY_", "ADVLAB_"))}
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    port, ports = free_port(), {f"--{name}": str(free_port()) for name in (
        "dashboard-port", "ray-client-server-port", "dashboard-agent-listen-port", "metrics-export-port")}
    process = subprocess.Popen([str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
                                "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", str(cpus),
                                "--num-gpus", "0", "--temp-dir", temp, "--disable-usage-stats",
                                "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
                                *[item for pair in ports.items() for item in pair]],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for_jobs_api(f"http://127.0.0.1:{ports['--dashboard-port']}", process)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()  # `ray start --block` stops what it started (about 2 s)
        try:
            process.wait(timeout=60)
        finally:
            with contextlib.suppress(ProcessLookupError):  # anything left of its session
                os.killpg(process.pid, signal.SIGKILL)
            shutil.rmtree(temp, ignore_errors=True)


def _wait_for_jobs_api(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            JobSubmissionClient(url).list_jobs()
            return
        except Exception:  # not up yet: Ray raises ConnectionError or RuntimeError, by how far it got
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"the Ray head did not come up in {START_SECONDS:.0f} s") from None
            time.sleep(1)
