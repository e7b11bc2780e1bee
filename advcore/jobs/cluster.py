"""Where runs execute, as AdvLab knows it without Ray: on this machine (the local scheduler's
processes, the default, with nothing to install) or on a Ray cluster, chosen by `--cluster ADDRESS`
or `$ADVLAB_CLUSTER`. ADDRESS is the Ray head's HOST:PORT as `ray start --head` prints it, or
`local`. Only a cluster address imports Ray, where a connection is made (`ray_executor.RayCluster`).
Also the cluster's description the scheduler writes for pages, which never connect themselves."""

from __future__ import annotations

import os
import time

from advcore.storage import files
from advcore.storage.runs import now, runs_root

CLUSTER_ENV = "ADVLAB_CLUSTER"
ATTEMPT_ENV = "ADVLAB_JOB"  # in a cluster job's process: the job's submission id, the one attempt it may train
LOCAL = "local"
LARGEST_NODE = "the cluster's largest node"  # a run's process runs on one node: its GPUs are the most one asks
STATE_FILE = "_cluster.json"  # the cluster as the scheduler last saw it, for pages (a leading "_": not a run)
STATE_BYTES = 64 * 1024
SHARD_CPUS_ENV = "ADVLAB_SHARD_CPUS"  # an evaluation shard's CPUs on a cluster without GPUs


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


def shard_cpus() -> int:
    """CPUs per evaluation shard on a cluster without GPUs ($ADVLAB_SHARD_CPUS, default 1)."""
    text = os.environ.get(SHARD_CPUS_ENV, "1").strip()
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise ClusterError(f"{SHARD_CPUS_ENV} must be a whole number of CPUs >= 1, got {text!r}")
    return int(text)


def default_shards(total_gpus: float, total_cpus: float) -> int:
    """An evaluation's shards on a cluster: one per GPU, else one per `shard_cpus()` of its CPUs."""
    return int(total_gpus) if total_gpus >= 1 else max(1, int(total_cpus) // shard_cpus())


def state_path(root=None):
    return runs_root(root) / STATE_FILE


def write_state(root, address: str, **content) -> None:
    """What the scheduler knows of its cluster (`RayCluster.describe`, or the error that keeps it off),
    for pages, which never connect to the cluster themselves."""
    files.write_json(state_path(root), {"address": address, "updated": now(), "written": time.time(), **content})


def read_state(root=None) -> dict:
    """The cluster as the scheduler last wrote it, checked as any file of the runs folder is: {} when
    there is none, or it is too large, damaged, or not of this shape."""
    try:
        content = files.read_json(state_path(root), "cluster state", limit=STATE_BYTES)
    except (OSError, ValueError, files.FileProblem):
        return {}
    numbers = ("free_cpus", "total_cpus", "free_gpus", "total_gpus", "written")
    if not isinstance(content.get("address"), str) or any(
            not isinstance(content.get(key, 0), (int, float)) or isinstance(content.get(key), bool) for key in numbers):
        return {}
    nodes = content.get("nodes", [])
    if not isinstance(nodes, list) or not all(
            isinstance(node, dict) and isinstance(node.get("host"), str) and isinstance(node.get("gpus", 0), (int, float))
            and not isinstance(node.get("gpus", 0), bool) and 0 <= node.get("gpus", 0) <= 64 for node in nodes):
        return {}
    dashboard = content.get("dashboard", "")
    if not isinstance(dashboard, str) or not dashboard.startswith(("http://", "https://")) or any(
            character in dashboard for character in " ()[]<>\"\n"):
        content["dashboard"] = ""
    if not isinstance(content.get("error", ""), str):
        return {}
    return content | {"nodes": nodes}


def most_gpus(state: dict) -> int | None:
    """The most GPUs one node of a described cluster has (a run's process runs on one node); None when
    the scheduler has not described it yet."""
    if not state or state.get("error"):
        return None
    return int(max((node.get("gpus", 0) for node in state["nodes"]), default=0))
