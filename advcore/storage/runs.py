"""The run store: one directory per training run, written atomically, read by anyone.

    <root>/<run id>/
        config.json      the validated configuration
        status.json      queued | running | stopping | stopped | finished | failed, pid, times, device, error
        history.csv      one row per finished epoch
        model.keras      the latest model (final, or as saved on stop)
                         (a GAN run: generator.keras and critic.keras, and samples/ with a grid per epoch)
        checkpoints/     epoch-NNNN.keras + epoch-NNNN.optimizer.npz, the last few epochs
        tensorboard/     TensorBoard logs
        train.log        the training process's output

A run whose process died without saying so (SIGKILL, a crash of the machine) is reported as failed
by `Run.status()`, so no reader ever sees a run stuck at running.

Run folders may sit on a filesystem other people share, so every file is untrusted: each is read
through `files.read_bounded` (never through a symbolic link, never more than its expected size), every
field is checked and bounded before a page computes with it, a symbolic link is never a run, and a
process is taken for a run's own only when it provably is (`Run.owner`).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import secrets
import socket
from pathlib import Path

import numpy as np
import pandas as pd

from advcore.storage import files
from advcore.training.config import ConfigError, GanConfig, TrainConfig, config_kind, upgraded

RUNS_ENV = "ADVLAB_RUNS_DIR"
STATUSES = ("queued", "running", "stopping", "stopped", "finished", "failed")
LIVE_STATUSES = ("queued", "running", "stopping")  # a process may own the run (a queued one once launched)
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
PID_MAX = 2**22  # Linux's highest possible pid: a larger number names no process anywhere
MAX_COUNT = 10**9  # epochs, batches and steps beyond any run (and still exact as floats)
MAX_JSON_BYTES = 2 * 2**20  # status, config and progress files take kilobytes
MAX_HISTORY_BYTES = 64 * 2**20  # about 200,000 epochs of history
MAX_NAME_BYTES = 4096
LOG_TAIL_BYTES = 64 * 2**10
MAX_SAMPLES_BYTES = 16 * 2**20  # a GAN's sample grid is a PNG of a few hundred kilobytes


class RunError(Exception):
    """A run that does not exist, a hostile run id, or a damaged run file; the message says which."""


class TrainingDiverged(RuntimeError):
    """The loss stopped being a finite number: training can only get worse from there."""


class RunRefused(RunError):
    """What the run's state forbids (a second process, a resume that would lose work); nothing was changed."""


def runs_root(root: str | os.PathLike | None = None) -> Path:
    return Path(root if root is not None else os.environ.get(RUNS_ENV, "runs")).expanduser()


def check_run_id(run_id: str) -> str:
    """A run id is one plain path component: it can never name anything outside the runs root."""
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id) or ".." in run_id:
        raise RunError(f"invalid run id {run_id!r}: use letters, digits, '.', '_' and '-' "
                       "(128 at most, no '..', starting with a letter or digit)")
    return run_id


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-._")[:60] or "run"


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def valid_pid(pid) -> bool:
    """Whether `pid` can name one other process: a positive int above 1 (never init, never a process group
    or "every process", as 0 and negatives do for kill) and within the system's range."""
    return isinstance(pid, int) and not isinstance(pid, bool) and 1 < pid <= PID_MAX


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name; [] if gone, None without /proc."""
    if not valid_pid(pid):
        return []
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return [] if Path("/proc/self").exists() else None
    except OSError:
        return None


def process_start_ticks(pid: int) -> int | None:
    """When a process started (clock ticks since boot), to tell it from a later one with its pid."""
    fields = _proc_stat(pid)
    return int(fields[19]) if fields else None


def process_alive(pid: int, start_ticks: int | None = None) -> bool:
    """Whether the process runs: not gone, not a zombie, and not a newer process reusing the pid."""
    if not valid_pid(pid):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _proc_stat(pid)
    if fields is None:  # no /proc to ask (not Linux): the signal check is all there is
        return True
    return bool(fields) and fields[0] != "Z" and (start_ticks is None or int(fields[19]) == start_ticks)


def runs_advcore(pid: int) -> bool:
    """Whether the process is one of ours: this user's, running `python -m advcore` (always true where
    there is no /proc to ask)."""
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").exists():
        return True
    try:
        command = proc.joinpath("cmdline").read_bytes().split(b"\0")
        advcore = any(flag == b"-m" and module == b"advcore" for flag, module in zip(command, command[1:]))
        return advcore and proc.stat().st_uid == os.geteuid()
    except OSError:
        return False


class Run:
    def __init__(self, root: Path, run_id: str):
        self.root = root
        self.id = check_run_id(run_id)
        self.path = root / run_id

    def __repr__(self) -> str:
        return f"Run({self.path})"

    config_path = property(lambda self: self.path / "config.json")
    status_path = property(lambda self: self.path / "status.json")
    history_path = property(lambda self: self.path / "history.csv")
    model_path = property(lambda self: self.path / "model.keras")
    checkpoint_dir = property(lambda self: self.path / "checkpoints")
    tensorboard_dir = property(lambda self: self.path / "tensorboard")
    log_path = property(lambda self: self.path / "train.log")
    process_log_path = property(lambda self: self.path / "process.log")
    progress_path = property(lambda self: self.path / "progress.json")
    lock_path = property(lambda self: self.path / "owner.lock")  # held by the one process training the run
    stop_request_path = property(lambda self: self.path / "stop.request")  # see request_stop
    name_path = property(lambda self: self.path / "name.txt")
    skipped_path = property(lambda self: self.path / "skipped.json")  # an image folder's files that were skipped

    def samples_path(self, epoch: int | None = None) -> Path:
        """A GAN run's sample grid of an epoch, or its latest one."""
        return self.path / "samples" / ("latest.png" if epoch is None else f"epoch-{epoch:04d}.png")

    # ------------------------------------------------------------------ creation and lookup

    @classmethod
    def create(cls, config: dict, root: str | os.PathLike | None = None, name: str | None = None,
               owner_pid: int | None = None) -> "Run":
        """A new queued run. With `owner_pid` it belongs to that process from the start (one that trains
        it itself), so the scheduler never launches it."""
        root = runs_root(root)
        root.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
        run = cls(root, f"{stamp}-{_slug(name or config.get('name', 'run'))}-{secrets.token_hex(2)}")
        run.path.mkdir()
        files.write_json(run.config_path, config)
        owner = {} if owner_pid is None else {"pid": owner_pid, "pid_start": process_start_ticks(owner_pid)}
        files.write_json(run.status_path, {"status": "queued", "created": now(), "host": socket.gethostname(), **owner})
        return run

    @classmethod
    def open(cls, run_id: str, root: str | os.PathLike | None = None) -> "Run":
        run = cls(runs_root(root), run_id)
        if run.path.is_symlink() or not run.path.is_dir():
            raise RunError(f"no run {run_id!r} in {run.root}" + (" (a symbolic link is never a run)"
                                                                  if run.path.is_symlink() else ""))
        return run

    # ------------------------------------------------------------------ reading

    def _read(self, path: Path, limit: int, tail: bool = False) -> bytes:
        """A file of the run, bounded and never through a symbolic link (`files.read_bounded`); a file
        that is missing, a link, too large or unreadable is a RunError naming it."""
        if self.path.is_symlink():
            raise RunError(f"run {self.id}: the run folder is a symbolic link, which AdvLab never follows")
        try:
            return files.read_bounded(path, limit, tail=tail)
        except FileNotFoundError:
            raise RunError(f"run {self.id}: {path.name} is missing") from None
        except files.FileProblem as problem:
            raise RunError(f"run {self.id}: {path.name} is damaged ({problem})") from None
        except OSError as error:
            raise RunError(f"run {self.id}: {path.name} cannot be read ({error.strerror})") from None

    def _read_json(self, path: Path) -> dict:
        raw = self._read(path, MAX_JSON_BYTES)
        try:
            content = json.loads(raw.decode())
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
            raise RunError(f"run {self.id}: {path.name} is damaged ({error})") from None
        if not isinstance(content, dict):
            raise RunError(f"run {self.id}: {path.name} is damaged (not a JSON object)")
        return content

    def config(self) -> dict:
        """config.json's object as written (a training run's, or an evaluation job's plan)."""
        return self._read_json(self.config_path)

    def training_config(self) -> dict:
        """A training run's config.json (classifier or GAN), checked field by field and in today's form
        (`training.config.upgraded`): whatever does not validate is damage, named with its field."""
        content, _ = upgraded(self.config())
        try:
            (GanConfig if config_kind(content) == "gan" else TrainConfig).from_dict(content, checked=False)
        except ConfigError as error:
            raise RunError(f"run {self.id}: config.json is damaged ({error})") from None
        return content

    def recorded_status(self) -> dict:
        status = self._read_json(self.status_path)
        problem = _status_problem(status)
        if problem:
            raise RunError(f"run {self.id}: status.json {problem}")
        return status

    def status(self) -> dict:
        """The recorded status, with a live status of this host whose process cannot be proven alive
        (`owner`) reported as failed: a dead process, a reused pid, or a made-up one never holds a slot.
        A Ray job's run is the cluster's to judge (`ray_executor.RayCluster.reconcile`): its process may
        be a Ray worker, which no pid proof here can tell from another."""
        status = self.recorded_status()
        owned = status["status"] in ("running", "stopping") or status["status"] == "queued" and "pid" in status
        if owned and on_this_host(status) and "job" not in status and self.owner(status) is None:
            process = f"the training process (pid {status['pid']})" if "pid" in status else "no training process"
            status = status | {"status": "failed", "error": f"{process} ended without reporting, or is not the "
                                                            f"run's own; last recorded status was {status['status']}"}
        return status

    def owner(self, status: dict | None = None) -> int | None:
        """The pid of the process that provably owns the run on this host, else None. Proof: a pid in
        range that is not this process, recorded by this host, alive, AdvLab's and this user's
        (`runs_advcore`), and either started when the status says (its start time) or holding the run's
        lock. Only such a process is ever signalled."""
        status = self.recorded_status() if status is None else status
        pid = status.get("pid")
        if not valid_pid(pid) or pid == os.getpid() or not on_this_host(status):
            return None
        started = status.get("pid_start")
        proven = (started is not None and process_alive(pid, started)) or (
            process_alive(pid) and self._lock_holder() == pid)
        return pid if proven and runs_advcore(pid) else None

    def _lock_holder(self) -> int | None:
        """The pid in the run's lock file while a process holds it; None for a lock that is free, a link,
        a FIFO or unreadable (such a file is never opened for writing)."""
        from advcore.storage import locks  # (locks imports nothing of the run store)

        try:
            return locks.holder(self.lock_path)
        except (OSError, files.FileProblem):
            return None

    def history(self) -> pd.DataFrame:
        """history.csv, checked: every column but phase and warning numeric, epochs counting up. A missing
        file is damage once the run has a model (the model of an epoch is saved after its history row)."""
        if not self.history_path.exists() and not self.history_path.is_symlink():
            if any(self.path.glob("*.keras")):
                raise RunError(f"run {self.id}: history.csv is missing, although the run has a model")
            return pd.DataFrame()
        raw = self._read(self.history_path, MAX_HISTORY_BYTES)
        try:
            history = pd.read_csv(io.BytesIO(raw))
        except (ValueError, UnicodeDecodeError) as error:
            raise RunError(f"run {self.id}: history.csv is damaged ({str(error).splitlines()[0]})") from None
        problem = _history_problem(history)
        if problem:
            raise RunError(f"run {self.id}: history.csv is damaged ({problem})")
        return history

    def progress(self) -> dict:
        """Where the running work is (a training run's {epoch, batch, steps_per_epoch, time}, an
        evaluation's {done, total, ...}), or {} if unknown: a progress file that is missing, damaged or
        holds anything but counts in range, finite numbers and short texts counts as unknown (it is
        rewritten every few batches, so it is no reason to call a run damaged)."""
        try:
            progress = self._read_json(self.progress_path)
        except RunError:
            return {}
        return {} if _progress_problem(progress) else progress

    def write_skipped(self, skipped: list) -> None:
        """Records an image folder's skipped files (`folder_listing.Skipped`): split, path and reason."""
        files.write_json(self.skipped_path, {"skipped": [[s.split, s.path, s.reason] for s in skipped]})

    def skipped(self) -> list[tuple[str, str, str]]:
        """(split, path, reason) of each file the run's image folder skipped; [] if none was recorded."""
        if not self.skipped_path.exists() and not self.skipped_path.is_symlink():
            return []
        rows = self._read_json(self.skipped_path).get("skipped")
        if not isinstance(rows, list) or not all(
                isinstance(row, list) and len(row) == 3 and all(isinstance(t, str) and len(t) <= 5000 for t in row)
                for row in rows):
            raise RunError(f"run {self.id}: skipped.json is damaged (not a list of [split, path, reason])")
        return [tuple(row) for row in rows]

    def name(self) -> str:
        """The name shown for the run: as renamed by the user, else the config's."""
        try:
            return self._read(self.name_path, MAX_NAME_BYTES).decode(errors="replace").strip()[:100] or self.id
        except RunError:
            pass
        try:
            return str(self.config().get("name", self.id))[:100]
        except RunError:
            return self.id

    def rename(self, name: str) -> None:
        name = name.strip()
        if not name or len(name) > 100 or any(ch in name for ch in "\n\r\t"):
            raise RunError("a run name needs 1 to 100 characters on one line")
        files.write_text(self.name_path, name + "\n")

    def log_tail(self, lines: int = 40) -> str:
        """The end of the training log, then of the process's own output when the app launched it."""
        parts = []
        for path in (self.log_path, self.process_log_path):
            try:
                tail = self._read(path, LOG_TAIL_BYTES, tail=True).decode(errors="replace").splitlines()[-lines:]
            except RunError as problem:
                tail = [str(problem)] if path.is_symlink() else []
            if tail:
                parts.append(f"--- {path.name} ---\n" + "\n".join(tail))
        return "\n".join(parts)

    def checkpoints(self) -> list[int]:
        """Epochs (1-based) with a complete checkpoint: the model and the optimizer state."""
        epochs = []
        if self.checkpoint_dir.is_symlink():
            return epochs
        for model in self.checkpoint_dir.glob("epoch-*.keras"):
            match = re.fullmatch(r"epoch-(\d+)", model.stem)
            if match and model.with_suffix(".optimizer.npz").exists():
                epochs.append(int(match.group(1)))
        return sorted(epochs)

    def latest_samples(self) -> bytes | None:
        """A GAN run's latest sample grid (PNG bytes), or None when there is none to show safely."""
        if self.samples_path().parent.is_symlink():
            return None
        try:
            return self._read(self.samples_path(), MAX_SAMPLES_BYTES)
        except RunError:
            return None

    def model_file(self) -> Path | None:
        """The run's model.keras when it is a regular file of the run folder (never a link out of it)."""
        path = self.model_path
        return path if not (self.path.is_symlink() or path.is_symlink()) and path.is_file() else None

    def private_copy(self, root: Path) -> "Run":
        """This run's copy under `root`, of what a resume reads (config, status, history and complete
        checkpoints): a worker that is not the chief resumes from it, so that it writes nothing into
        the run that the chief writes."""
        copy = Run(Path(root), self.id)
        copy.checkpoint_dir.mkdir(parents=True)
        for path in (self.config_path, self.status_path, self.history_path):
            if path.exists():
                files.copy_regular(path, copy.path / path.name)
        for epoch in self.checkpoints():
            for path in self.checkpoint_paths(epoch):
                files.copy_regular(path, copy.checkpoint_dir / path.name)
        return copy

    def checkpoint_paths(self, epoch: int) -> tuple[Path, Path]:
        stem = self.checkpoint_dir / f"epoch-{epoch:04d}"
        return stem.with_suffix(".keras"), stem.with_suffix(".optimizer.npz")

    # ------------------------------------------------------------------ writing (the training process)

    def update_status(self, **fields) -> dict:
        """Sets fields of status.json; a damaged one raises RunError and stays as it was, for a person to read."""
        try:
            status = self.recorded_status()
        except RunError:
            if self.status_path.exists():
                raise
            status = {}
        status |= fields | {"updated": now()}
        files.write_json(self.status_path, status)
        return status

    def request_stop(self) -> None:
        """Asks the run's process to stop after its current batch through the run's folder, where no
        signal reaches it (a process on another machine); the request holds until the run is queued again."""
        files.write_text(self.stop_request_path, now() + "\n")

    def queue_again(self) -> None:
        """Marks a run that ended as queued once more, with no process, for the scheduler to resume; when
        it was created and first started, and its best epoch, stay. A stop request of its last attempt goes."""
        self.stop_request_path.unlink(missing_ok=True)
        status = self.recorded_status()
        kept = {field: status[field] for field in ("created", "started", "best_epoch", "best_val_robust_accuracy")
                if field in status}
        files.write_json(self.status_path, {"status": "queued", **kept, "host": socket.gethostname(),
                                            "requeued": now()})

    def write_history(self, history: pd.DataFrame) -> None:
        with files.atomic_path(self.history_path) as tmp:
            history.to_csv(tmp, index=False)


_STATUS_FIELDS = {"pid": int, "pid_start": int, "epoch": int, "total_epochs": int, "steps_per_epoch": int,
                  "best_epoch": int, "best_val_robust_accuracy": float, "error": str, "reason": str, "device": str,
                  "host": str, "signal": str, "phase": str, "job": str, "cluster": str, "gpus_asked": int}
_STATUS_RANGES = {"gpus_asked": (0, 64), "pid": (2, PID_MAX), "pid_start": (0, 2**62), "epoch": (0, MAX_COUNT),
                  "total_epochs": (1, MAX_COUNT), "steps_per_epoch": (1, MAX_COUNT), "best_epoch": (1, MAX_COUNT),
                  "best_val_robust_accuracy": (0, 1)}
_STATUS_TIMES = ("created", "launched", "started", "resumed", "requeued", "ended", "updated")
_MAX_TEXT = 20_000  # an error message with its context; longer is not AdvLab's writing


def on_this_host(status: dict) -> bool:
    """Whether the run's process was started on this host (a status that names no host is this host's)."""
    return status.get("host", socket.gethostname()) == socket.gethostname()


# progress number -> its lowest and highest value
_PROGRESS_NUMBERS = {"epoch": (1, MAX_COUNT), "batch": (0, MAX_COUNT), "steps_per_epoch": (1, MAX_COUNT),
                     "done": (0, MAX_COUNT), "total": (1, MAX_COUNT), "elapsed": (0, MAX_COUNT), "fraction": (0, 1)}


MAX_SHARDS_SHOWN = 256


def _progress_problem(progress: dict, nested: bool = False) -> bool:
    """Whether a progress object holds anything a page could not compute with: its counts must be
    numbers in their ranges (NaN fails the comparison), its other fields short texts, and no more done
    than the total; a sharded evaluation's "shards" a short list of such objects."""
    for key, value in progress.items():
        if key == "shards" and not nested:
            if not isinstance(value, list) or len(value) > MAX_SHARDS_SHOWN or any(
                    not isinstance(shard, dict) or _progress_problem(shard, nested=True) for shard in value):
                return True
        elif key in _PROGRESS_NUMBERS:
            lowest, highest = _PROGRESS_NUMBERS[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not lowest <= value <= highest:
                return True
        elif not isinstance(value, str) or len(value) > 1000:
            return True
    return progress.get("done", 0) > progress.get("total", MAX_COUNT)


def parse_time(text: str) -> dt.datetime:
    """An ISO time with its time zone (as AdvLab writes them); ValueError for anything else."""
    time = dt.datetime.fromisoformat(text)
    if time.tzinfo is None:
        raise ValueError("no time zone")
    return time
_TEXT_COLUMNS = ("phase", "warning")  # every other history column holds numbers (or nothing)


def _status_problem(status: dict) -> str:
    """What is wrong with a status.json object, in words; "" when nothing is."""
    if status.get("status") not in STATUSES:
        return f"has unknown status {status.get('status')!r}"
    for field, kind in _STATUS_FIELDS.items():
        value = status.get(field)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float) if kind is float
                                                                            else kind)):
            return f"field {field!r} is {_shown(value)}, not {'a number' if kind is not str else 'text'}"
        low, high = _STATUS_RANGES.get(field, (None, None))
        if value is not None and low is not None and not low <= value <= high:  # (NaN compares False)
            return f"field {field!r} is {_shown(value)}, outside {low:,} to {high:,}"
        if isinstance(value, str) and len(value) > _MAX_TEXT:
            return f"field {field!r} holds {len(value):,} characters, over {_MAX_TEXT:,}"
    for field in _STATUS_TIMES:
        try:
            if status.get(field) is not None:
                parse_time(status[field])
        except (TypeError, ValueError):
            return f"field {field!r} is {_shown(status[field])}, not a time with its time zone"
    return ""


def _shown(value) -> str:
    """A value for a message, cut short (a 10**400 or a megabyte of text stays readable)."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else f"{str(value)[:12]}... (huge)"
    return text if len(text) <= 60 else text[:57] + "..."


def _history_problem(history: pd.DataFrame) -> str:
    if not len(history):
        return ""
    if "epoch" not in history:
        return "no epoch column"
    for column in history.columns.drop(list(_TEXT_COLUMNS), errors="ignore"):
        numbers = pd.to_numeric(history[column], errors="coerce")
        bad = history[column].notna() & numbers.isna()
        if bad.any():
            row = int(bad.to_numpy().argmax())
            return f"column {column!r}, row {row + 1}: {history[column].iloc[row]!r} is not a number"
    epochs = history["epoch"].to_numpy()
    if history["epoch"].isna().any() or (epochs % 1).any() or (epochs < 1).any() or (np.diff(epochs) <= 0).any():
        return "the epochs do not count up from 1"
    return ""


def awaits_process(status: dict) -> bool:
    """Whether a run's status is queued with no process launched for it yet, nor a cluster job submitted."""
    return status["status"] == "queued" and "pid" not in status and "job" not in status


def safe_status(run: Run) -> dict:
    """The run's status, or "damaged" when its status file cannot be read (such a run is never launched)."""
    try:
        return run.status()
    except RunError:
        return {"status": "damaged"}


def list_runs(root: str | os.PathLike | None = None) -> list[Run]:
    """Every run directory under the root, newest first (ids start with their UTC time)."""
    root = runs_root(root)
    if not root.is_dir():
        return []
    return [Run(root, path.name) for path in sorted(root.iterdir(), reverse=True)
            if not path.is_symlink() and path.is_dir() and _RUN_ID.fullmatch(path.name) and ".." not in path.name]
