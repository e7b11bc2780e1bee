"""The connection to a Ray head, shared by the Ray executor and sharded evaluations: Ray imported
where installed, this process connected once, with the environment every job and task needs.

Imported only where a cluster address is given: the local path never imports Ray.
"""

from __future__ import annotations

import socket

from advcore.jobs.cluster import ClusterError
from advcore.jobs.processes import PROJECT_ROOT

try:
    import ray
    from ray.job_submission import JobSubmissionClient
except ImportError:
    ray = None

CONNECT_SECONDS = 5.0
JOB_ENV = {"PYTHONPATH": str(PROJECT_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}  # every job's, and the tasks'


def first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


def _unreachable(address: str, reason: str) -> ClusterError:
    return ClusterError(f"no Ray cluster answers at {address} ({reason}): start one with `ray start --head`, or "
                        "use --cluster local")


def reach(address: str):
    """Connects this process to the Ray head at HOST:PORT (once) and returns a client of its Jobs API;
    raises ClusterError saying why not."""
    if ray is None:
        raise ClusterError("Ray is not installed here: `pip install -r requirements-cluster.txt`, or use "
                           "--cluster local")
    host, _, port = address.rpartition(":")
    try:  # at once, where Ray's own client would retry for half a minute
        socket.create_connection((host, int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as error:
        raise _unreachable(address, error.strerror or str(error)) from None
    try:  # finds the Jobs endpoint (the head's dashboard) from the head's address
        client = JobSubmissionClient(address)
        if not ray.is_initialized():
            ray.init(address=address, runtime_env={"env_vars": JOB_ENV}, log_to_driver=False,
                     logging_level="ERROR", configure_logging=False)
    except Exception as error:  # Ray raises ConnectionError, RuntimeError or ValueError, by what failed
        raise _unreachable(address, first_line(error)) from None
    return client
