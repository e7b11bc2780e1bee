"""Where runs execute: on this machine (the local scheduler's processes, the default, with nothing to
install) or on a Ray cluster, chosen by `--cluster ADDRESS` or `$ADVLAB_CLUSTER`. ADDRESS is the Ray
head's HOST:PORT as `ray start --head` prints it, or `local`. Only a cluster address imports Ray."""

from __future__ import annotations

import os

CLUSTER_ENV = "ADVLAB_CLUSTER"
JOB_ENV = "ADVLAB_JOB"  # in a cluster job's process: the job's submission id, the one attempt it may train
LOCAL = "local"


class ClusterError(Exception):
    """A cluster that cannot take AdvLab's work, in one line that says what to do."""


def cluster_address(given: str | None = None) -> str | None:
    """The Ray head's HOST:PORT that `given` (else $ADVLAB_CLUSTER) names; None for the local executor."""
    text = (os.environ.get(CLUSTER_ENV, LOCAL) if given is None else given).strip()
    if text in ("", LOCAL):
        return None
    host, colon, port = text.rpartition(":")
    if not colon or not host or "/" in text or not port.isdigit() or not 0 < int(port) < 65536:
        raise ClusterError(f"cluster address {text!r}: give the Ray head's HOST:PORT as `ray start --head` prints "
                           f"it (for example 10.0.0.5:6379), or {LOCAL}")
    return text


def connect(address: str, root):
    """The Ray cluster at `address`, checked: reachable, and seeing the runs folder `root` as this
    machine does (`advcore.jobs.ray_executor.RayCluster`). Raises ClusterError."""
    from advcore.jobs import ray_executor  # the local path never imports Ray

    return ray_executor.RayCluster.connect(address, root)
