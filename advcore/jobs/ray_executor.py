"""The Ray executor: each queued run becomes one Ray job, whose entrypoint is the command the local
scheduler runs (`python -m advcore train --resume RUN`), with the run's GPUs asked of Ray.

Ray's own scheduler then places and queues the jobs by their CPUs and GPUs. The run folders must
live where every node sees them at the same path (`$ADVLAB_RUNS_DIR` on a shared filesystem):
connecting checks that, with a Ray task on every node writing a token that this machine reads
back. The same task names each node's Python, which the jobs run: a job's bare `python` is whatever
the node's PATH gives, not the environment Ray and AdvLab were installed in.

Imported only where a cluster address is given (the scheduler, `train --cluster`): the local path never
imports Ray.
"""

from __future__ import annotations

import secrets
import shlex
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from advcore import devices
from advcore.jobs import gpus
from advcore.jobs.cluster import ATTEMPT_ENV, LARGEST_NODE, ClusterError
from advcore.jobs.ray_connection import JOB_ENV, first_line, ray, reach
from advcore.jobs.processes import PROJECT_ROOT
from advcore.storage import files
from advcore.storage.runs import LIVE_STATUSES, Run, RunError, awaits_process, list_runs, now, runs_root, safe_status
from advcore.training.config import config_kind

if ray is not None:
    from ray.job_submission import JobStatus
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

PROBE_FOLDER = "_cluster_probe"  # not a run id (a leading "_")
PROBE_SECONDS = 120.0
LOG_TAIL_LINES = 40


@dataclass(frozen=True)
class Node:
    host: str
    python: str
    gpus: float


def _check_node(probe: str, token: str) -> tuple[str, str]:
    """On a node: writes the token where the runs folder is said to be; returns the node's host and Python."""
    files.write_json(Path(probe), {"token": token})
    return socket.gethostname(), sys.executable


class RayCluster:
    """A connected, checked Ray cluster for the runs root `root`."""

    def __init__(self, address: str, root: Path, client, nodes: list[Node]):
        self.address, self.root, self.client, self.nodes = address, root, client, nodes

    @classmethod
    def connect(cls, address: str, root=None) -> "RayCluster":
        root = runs_root(root).resolve()
        root.mkdir(parents=True, exist_ok=True)
        client = reach(address)
        return cls(address, root, client, _checked_nodes(root))

    @property
    def dashboard_url(self) -> str:
        return self.client.get_address()

    def close(self) -> None:
        if ray is not None and ray.is_initialized():
            ray.shutdown()

    def describe(self) -> dict:
        """The cluster now, for `cluster.write_state`: its alive nodes, its CPUs and GPUs free and in all."""
        total, free = ray.cluster_resources(), ray.available_resources()
        nodes = [{"host": node.get("NodeManagerHostname", node.get("NodeManagerAddress", "?")),
                  "cpus": node.get("Resources", {}).get("CPU", 0.0), "gpus": node.get("Resources", {}).get("GPU", 0.0)}
                 for node in ray.nodes() if node.get("Alive")]
        return {"dashboard": self.dashboard_url, "nodes": nodes, "free_cpus": free.get("CPU", 0.0),
                "total_cpus": total.get("CPU", 0.0), "free_gpus": free.get("GPU", 0.0), "total_gpus": total.get("GPU", 0.0)}

    def most_gpus(self) -> int:
        """The most GPUs one node has: a run's process runs on one node."""
        return int(max((node.gpus for node in self.nodes), default=0))

    def submit(self, run: Run) -> str:
        """Submits a run that awaits a process as a new Ray job (one per attempt: a resume is a new job)
        and records it in the run's status; returns the job's submission id, or the job another
        submitter recorded first. A run that cannot be submitted fails with the reason, raised as
        ClusterError."""
        with gpus.ledger(self.root):  # one job per attempt, whoever submits: the scheduler or the CLI
            status = _recorded(run)
            if status.get("status") == "queued" and status.get("job"):
                return status["job"]
            if not status or not awaits_process(status):
                raise ClusterError(f"run {run.id} is {status.get('status', 'damaged')}: it awaits no process")
            try:
                return self._submit(run)
            except OSError as error:  # the head out of reach for now: the run stays queued for the next try
                raise ClusterError(f"run {run.id} not submitted yet: {first_line(error)}") from None
            except (RunError, devices.DeviceError, RuntimeError) as error:  # RuntimeError: the Jobs API refused
                run.update_status(status="failed", ended=now(), error=f"not started: {first_line(error)}")
                raise ClusterError(f"run {run.id} not started: {first_line(error)}") from None

    def _submit(self, run: Run) -> str:
        content = run.config()
        asked, workers = gpus.check_request(content, range(self.most_gpus()), LARGEST_NODE), gpus.workers(content)
        command = "train-gan" if config_kind(content) == "gan" else "train"
        if workers > 1 and command == "train-gan":
            raise devices.DeviceError("distribute.workers: a GAN run trains in one process")
        job = f"{run.id}--{secrets.token_hex(4)}"
        python = self.nodes[0].python  # the same environment on every node, checked at connection
        entrypoint = shlex.join([python, "-m", "advcore", command, "--resume", run.id, "--runs-dir", str(self.root)])
        # several workers: the entrypoint only drives Ray Train's worker group, which holds the CPUs and GPUs
        self.client.submit_job(entrypoint=entrypoint, submission_id=job, entrypoint_num_cpus=1 if workers == 1 else 0,
                               entrypoint_num_gpus=asked if workers == 1 else 0,
                               runtime_env={"env_vars": JOB_ENV | {ATTEMPT_ENV: job}}, metadata={"advlab_run": run.id})
        run.update_status(job=job, cluster=self.address, launched=now(), gpus_asked=asked, workers=workers)
        return job

    def submit_queued(self, echo=print) -> int:
        """Submits every run of the root that awaits a process, oldest first; returns how many were."""
        submitted = 0
        for run in reversed(list_runs(self.root)):
            if not awaits_process(safe_status(run)):
                continue
            try:
                job = self.submit(run)
            except ClusterError as error:
                echo(f"{now()} {error}")
                continue
            submitted += 1
            echo(f"{now()} submitted {run.id} as Ray job {job}")
        return submitted

    def reconcile(self, echo=print) -> bool:
        """Marks failed each live run whose Ray job ended without the run saying so (a node that died, a
        process killed), with the job's log tail, or that the head no longer knows (it restarted);
        returns whether any run is still live on the cluster."""
        live = False
        for run in list_runs(self.root):
            status = _recorded(run)
            job = status.get("job")
            if status.get("status") not in LIVE_STATUSES or not job or status.get("cluster") != self.address:
                continue
            try:
                info = self.client.get_job_info(job)
            except OSError as error:  # the head out of reach for now: ask again
                echo(f"{now()} {run.id}: Ray job {job} not readable now ({first_line(error)})")
                live = True
                continue
            except RuntimeError as error:
                self._fail(run, f"Ray job {job} is unknown to the cluster ({first_line(error)})", echo)
                continue
            if not JobStatus(info.status).is_terminal():
                live = True
                continue
            self._fail(run, f"Ray job {job} {str(info.status).lower()}: {info.message or 'no message'}", echo,
                       self._log_tail(job))
        return live

    def _log_tail(self, job: str) -> str:
        try:
            return "\n".join(self.client.get_job_logs(job).splitlines()[-LOG_TAIL_LINES:])
        except (OSError, RuntimeError) as error:
            return f"(its log could not be read: {first_line(error)})"

    @staticmethod
    def _fail(run: Run, error: str, echo, tail: str = "") -> None:
        if _recorded(run).get("status") not in LIVE_STATUSES:  # it reported its end as its job ended
            return
        run.update_status(status="failed", ended=now(), error=f"{error}\n{tail}".strip())
        echo(f"{now()} {run.id} failed: {error}")


def _recorded(run: Run) -> dict:
    """The run's status as written (not `Run.status`'s verdict on a process of this host), {} if damaged."""
    try:
        return run.recorded_status()
    except RunError:
        return {}


def _checked_nodes(root: Path) -> list[Node]:
    """Every alive node, having written a token into the runs folder that this machine then reads."""
    token = secrets.token_hex(8)
    probes = root / PROBE_FOLDER
    probes.mkdir(exist_ok=True)
    alive = [node for node in ray.nodes() if node.get("Alive")]
    check = ray.remote(num_cpus=0)(_check_node)
    written = {node["NodeID"]: probes / f"{token}-{node['NodeID'][:12]}.json" for node in alive}
    calls = {node_id: check.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False))
             .remote(str(path), token) for node_id, path in written.items()}
    nodes = []
    try:
        for node in alive:
            try:
                host, python = ray.get(calls[node["NodeID"]], timeout=PROBE_SECONDS)
            except Exception as error:  # the task's own error (no AdvLab there), or a timeout
                raise ClusterError(f"node {node.get('NodeManagerAddress')} cannot run AdvLab ({first_line(error)}): "
                                   f"every node needs this environment, with this checkout at {PROJECT_ROOT}") from None
            try:
                shared = files.read_json(written[node["NodeID"]], "cluster check").get("token") == token
            except files.FileProblem:
                shared = False
            if not shared:
                raise ClusterError(f"the runs folder {root} is not shared: node {host} wrote its check there, and "
                                   "it is not here. Put $ADVLAB_RUNS_DIR on a filesystem every node mounts at the "
                                   "same path")
            nodes.append(Node(host, python, node.get("Resources", {}).get("GPU", 0.0)))
    finally:
        for written in probes.glob(f"{token}-*.json"):
            written.unlink(missing_ok=True)
    if len({node.python for node in nodes}) > 1:
        found = ", ".join(f"{node.python} on {node.host}" for node in nodes)
        raise ClusterError(f"the nodes run Ray from different Pythons ({found}): give every node the same "
                           "environment at the same path")
    return nodes
