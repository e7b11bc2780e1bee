"""Sharded evaluations and model profiles on a Ray cluster: one Ray task per range of test images
(`evaluation.shards`), each on one GPU, or on `$ADVLAB_SHARD_CPUS` CPUs (default 1) where the
cluster has none, plus one task per model's gradient-masking checks (a profile: one drawing its
class activations and traversals). The caller (the evaluation worker, or `evaluate --cluster` and
`profile --cluster` in a terminal) drives them: it reports their progress, passes a stop on, and
merges what they return, image for image, into the unsharded result. Tasks return their outcomes
through Ray's object store, so only the models' files need be where every node sees them.

Imported only where a cluster address is given: the local path never imports Ray (and where Ray is
missing, `reach` says how to install it).
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Callable

from advcore import models
from advcore.evaluation import plans, profile, shards, tracking
from advcore.jobs import cluster
from advcore.jobs.cluster import ClusterError
from advcore.jobs.ray_connection import first_line, ray, reach  # ray: None where it is not installed
from advcore.storage import data

POLL_SECONDS = 1.0


def task_resources() -> dict:
    """What each piece asks of Ray: a GPU where the cluster has any, else `cluster.shard_cpus()` CPUs."""
    if ray.cluster_resources().get("GPU", 0) >= 1:
        return {"num_gpus": 1, "num_cpus": 1}
    return {"num_cpus": cluster.shard_cpus(), "num_gpus": 0}


class Board:
    """The pieces' latest progress reports and the caller's stop, shared with the tasks."""

    def __init__(self):
        self.reports, self.stopping = {}, False

    def report(self, index: int, progress: dict) -> None:
        self.reports[index] = progress

    def read(self) -> dict:
        return self.reports

    def stop(self) -> None:
        self.stopping = True

    def should_stop(self) -> bool:
        return self.stopping


@functools.cache
def _loaders() -> tuple[Callable, Callable]:
    """A task process's devices, set up once, and its cached model and dataset loaders (Ray reuses
    the process for the next piece)."""
    from advcore import devices

    devices.configure(None if ray.get_gpu_ids() else ())  # Ray made only its GPUs visible; a CPU piece uses none
    return models.ModelCache(), functools.lru_cache(maxsize=2)(data.load)


def _measure(plan_content: dict, first: int, last: int, board, index: int) -> dict:
    load_model, load_dataset = _loaders()
    return shards.measure_shard(plans.Plan.from_dict(plan_content), first, last, load_model=load_model,
                                load_dataset=load_dataset, report=lambda progress: board.report.remote(index, progress),
                                should_stop=lambda: ray.get(board.should_stop.remote()))


def _check(plan_content: dict, label: str, board, index: int) -> tuple[list, dict]:
    load_model, load_dataset = _loaders()
    return shards.check_model(plans.Plan.from_dict(plan_content), label, load_model=load_model,
                              load_dataset=load_dataset, report=lambda progress: board.report.remote(index, progress))


def _shard_count(shards_asked: int | None) -> int:
    """`shards_asked`, checked, or the cluster's default (`cluster.default_shards`)."""
    if shards_asked is not None and (isinstance(shards_asked, bool) or not isinstance(shards_asked, int)
                                     or shards_asked < 1):
        raise ClusterError(f"shards: give a whole number >= 1, got {shards_asked!r}")
    total = ray.cluster_resources()
    return shards_asked or cluster.default_shards(total.get("GPU", 0), total.get("CPU", 1))


def _board():
    """A Board actor on the caller's node (it holds no resources), so that reports stay near."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    return ray.remote(num_cpus=0)(Board).options(scheduling_strategy=here).remote()


def _drive(pending: dict, board, pieces: list[shards.Piece], *, report: Callable[[dict], None],
           should_stop: Callable[[], bool], on_stop: Callable[[dict], None], unit: str = tracking.UNIT) -> dict:
    """Waits for the tasks in `pending` (object ref -> piece index), reporting their combined progress,
    and calls `on_stop(pending)` once when asked to stop. Returns each finished piece's value by index
    (a cancelled piece has none); a piece that fails fails the whole, with its error."""
    returned, began, stop_sent = {}, time.monotonic(), False
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
            for ref in ready:
                index = pending.pop(ref)
                try:
                    returned[index] = ray.get(ref)
                except ray.exceptions.TaskCancelledError:
                    pass
            report(shards.combined(pieces, ray.get(board.read.remote()), time.monotonic() - began, unit))
            if not stop_sent and should_stop():
                on_stop(pending)
                stop_sent = True
    except ray.exceptions.RayError as error:
        for ref in pending:
            ray.cancel(ref)
        raise ClusterError(f"a shard failed on the cluster: {_why(error)}") from None
    finally:
        ray.kill(board)
    return returned


def run_sharded(plan: plans.Plan, out: Path, address: str, *, shards_asked: int | None = None,
                should_stop: Callable[[], bool] = lambda: False, report: Callable[[dict], None] = lambda progress: None,
                load_model: Callable = models.load, load_dataset: Callable = data.load) -> tuple[str, plans.Results]:
    """Runs the plan on the cluster at `address` in `shards_asked` shards (default: `cluster.default_shards`),
    saving the merged results into `out`; returns ("finished" | "stopped", results). A piece that
    fails fails the evaluation (Ray retries a piece whose node died), with its error."""
    reach(address)
    images = plans.test_images(plan, load_model, load_dataset)
    ranges = shards.bounds(len(images.y), _shard_count(shards_asked))
    board, resources, content = _board(), task_resources(), plan.to_dict()
    measure, check = ray.remote(max_retries=3)(_measure), ray.remote(max_retries=3)(_check)
    pending = {measure.options(**resources).remote(content, first, last, board, index): index
               for index, (first, last) in enumerate(ranges)}
    pending |= {check.options(**resources).remote(content, model.label, board, index): index
                for index, model in enumerate(shards.checked_models(plan), start=len(ranges))}

    def stop(pending: dict) -> None:
        board.stop.remote()  # the shards end after their current slice of images, keeping their cells
        for ref, index in pending.items():
            if index >= len(ranges):  # the checks stop only by being cancelled
                ray.cancel(ref)

    returned = _drive(pending, board, shards.pieces(plan, ranges, len(images.class_names)), report=report,
                      should_stop=should_stop, on_stop=stop)
    checks = {model.label: returned[len(ranges) + offset] for offset, model in enumerate(shards.checked_models(plan))
              if len(ranges) + offset in returned}
    return shards.merge(plan, images, [returned[index] for index in range(len(ranges))], checks, out)


def _say(board, index: int) -> Callable[[str, float], None]:
    """A profile piece's `report(stage, fraction)`, as a Board report."""
    return lambda stage, fraction: board.report.remote(index, {"done": round(100 * fraction), "fraction": fraction,
                                                               "cell": stage})


def _profile_images(model_path: str, dataset: str, data_dir, settings_content: dict, first: int, last: int, board,
                    index: int) -> profile.Measured:
    load_model, load_dataset = _loaders()
    model, settings = load_model(model_path), profile.ProfileSettings.from_dict(settings_content)
    images = profile.sample(load_dataset(dataset, data_dir=data_dir, image_size=models.input_size(model),
                                         splits=("test",)), settings)
    return profile.measure_images(model, images.x[first:last], images.y[first:last], settings, first_index=first,
                                  report=_say(board, index))


def _profile_pictures(model_path: str, dataset: str, data_dir, settings_content: dict, judge_path: str | None, board,
                      index: int) -> profile.Pictures:
    load_model, load_dataset = _loaders()
    model, settings = load_model(model_path), profile.ProfileSettings.from_dict(settings_content)
    return profile.draw_pictures(model, load_dataset(dataset, data_dir=data_dir, image_size=models.input_size(model)),
                                 settings, load_model(judge_path) if judge_path else None, report=_say(board, index))


def profile_sharded(model_path: str, dataset: str, settings: profile.ProfileSettings, address: str, *,
                    data_dir: str | None = None, judge_path: str | None = None, shards_asked: int | None = None,
                    should_stop: Callable[[], bool] = lambda: False,
                    report: Callable[[dict], None] = lambda progress: None, load_model: Callable = models.load,
                    load_dataset: Callable = data.load) -> tuple | None:
    """`profile.compute`'s result, equal to it, from the cluster at `address`: a task per shard of the
    sampled test images measures them, and one more draws the class activations and traversals.
    None when stopped: a profile is kept whole or not at all, so a stop cancels every task."""
    reach(address)
    model = load_model(model_path)
    test = load_dataset(dataset, data_dir=data_dir, image_size=models.input_size(model), splits=("test",))
    models.check_compatible(model, test.input_shape, test.num_classes)  # here, before any task is sent
    images = profile.sample(test, settings)
    ranges = profile.ranges(settings, _shard_count(shards_asked))
    board, resources, content = _board(), task_resources(), settings.to_dict()
    common = (model_path, dataset, data_dir, content)
    measure, draw = ray.remote(max_retries=3)(_profile_images), ray.remote(max_retries=3)(_profile_pictures)
    pending = {measure.options(**resources).remote(*common, first, last, board, index): index
               for index, (first, last) in enumerate(ranges)}
    pending[draw.options(**resources).remote(*common, judge_path, board, len(ranges))] = len(ranges)
    share = (1 - profile.PICTURES_SHARE) / settings.count
    pieces = ([shards.Piece(f"images {first}-{last - 1}", 100, share * (last - first)) for first, last in ranges] +
              [shards.Piece("class activations and traversals", 100, profile.PICTURES_SHARE)])

    def stop(pending: dict) -> None:
        for ref in pending:
            ray.cancel(ref)

    returned = _drive(pending, board, pieces, report=report, should_stop=should_stop, on_stop=stop, unit="%")
    if len(returned) < len(pieces):
        return None
    measured = profile.Measured.joined([returned[index] for index in range(len(ranges))])
    return profile.assemble(settings, images, int(model.outputs[0].shape[-1]), measured, returned[len(ranges)])


def _why(error: Exception) -> str:
    """A failed task's own error (Ray wraps it in its traceback), or Ray's, in one line."""
    cause = getattr(error, "cause", None) or error
    return f"{type(cause).__name__}: {first_line(cause)}"
