"""What a Ray cluster costs against the local scheduler, on this machine, in one run: a throwaway Ray
head of `--cpus` CPUs on 127.0.0.1 (`advcore.jobs.local_head`) against this machine's own processes.

1. Start -> first training step: a scheduler already serving (local, or connected to the head), then a
   small run queued as the Train page queues one; the time until its process writes the first epoch's
   progress (model and data loaded, the first step under way), best of `--repeat`.
2. A sharded evaluation's wall time (PGD-20 Linf 0.1 on the bundled pgd-linf model, `--count` test
   images) run here unsharded, then on the cluster in 1 and in 2 shards, `--repeat` passes (Ray's
   task processes start cold in the first pass and are reused after), and whether each equals the
   local run image for image.

On one machine the shards share its cores, so this is the overhead; scaling on a real cluster
(shards x GPUs) needs a multi-machine test bed.

    python benchmarks/cluster_overhead.py [--cpus 2] [--count 2000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from advcore.evaluation import plans  # noqa: E402
from advcore.jobs import cluster, local_head, processes, ray_evaluation, scheduler  # noqa: E402
from advcore.storage import locks  # noqa: E402
from advcore.storage.runs import Run  # noqa: E402
from advcore.training.config import TrainConfig  # noqa: E402

RUN = {"mode": "vanilla", "batch_size": 128, "seed": 3, "data": {"train_size": 2048, "validation_size": 256},
       "schedule": {"kind": "constant", "epochs": 1}}


def wait(condition, what: str, timeout: float = 300.0):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: nothing after {timeout:.0f} s")
        time.sleep(0.05)
    return value


def start_to_first_step(runs: Path, address: str | None, repeat: int) -> list[float]:
    """Seconds from queueing a run to its first epoch's progress, each run in turn, one scheduler serving."""
    arguments = ["scheduler", "--runs-dir", str(runs), "--idle-exit", "600", "--cluster", address or cluster.LOCAL]
    serving = subprocess.Popen(**processes.command(arguments), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait(lambda: locks.holder(scheduler.lock_path(runs)), "the scheduler's lock")
        if address:
            wait(lambda: cluster.read_state(runs).get("nodes"), "the cluster's description")
        seconds = []
        for attempt in range(repeat):
            began = time.perf_counter()
            run = Run.create(TrainConfig.from_dict(RUN).to_dict(), runs, f"overhead-{attempt}")
            wait(lambda: run.progress().get("epoch"), f"run {run.id}'s first step")
            seconds.append(time.perf_counter() - began)
            wait(lambda: run.recorded_status()["status"] in ("finished", "failed", "stopped"), f"run {run.id}'s end")
        return seconds
    finally:
        serving.terminate()
        serving.wait(timeout=60)


def evaluation_seconds(plan: plans.Plan, out: Path, address: str | None, shards: int | None = None) -> float:
    began = time.perf_counter()
    if address:
        ray_evaluation.run_sharded(plan, out, address, shards_asked=shards)
    else:
        plans.run_plan(plan, out)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    plan = plans.Plan.from_dict({
        "models": [{"label": "pgd-linf", "path": str(ROOT / "assets" / "models" / "pgd-linf" / "model.keras")}],
        "attacks": [{"name": "pgd", "method": "pgd", "options": {"steps": 20}}], "eps": {"linf": [0.1]},
        "count": args.count, "batch_size": 250})
    with tempfile.TemporaryDirectory() as temp, local_head.local_head(cpus=args.cpus) as address:
        temp = Path(temp)
        print(f"Ray head at {address} ({args.cpus} CPUs); run: 1 vanilla epoch of 2048 images")
        for name, where in (("local scheduler", None), ("Ray cluster", address)):
            seconds = start_to_first_step(temp / name.replace(" ", "-"), where, args.repeat)
            print(f"start -> first step, {name}: " + ", ".join(f"{s:.1f} s" for s in seconds))
        print(f"evaluation: PGD-20 Linf 0.1, pgd-linf, {args.count} images")
        local = evaluation_seconds(plan, temp / "local", None)
        print(f"  local, unsharded: {local:.1f} s")
        reference = (temp / "local" / plans.IMAGES_FILE).read_bytes()
        for attempt in range(args.repeat):
            for shards in (1, 2):
                out = temp / f"shards-{shards}-{attempt}"
                seconds = evaluation_seconds(plan, out, address, shards)
                equal = (out / plans.IMAGES_FILE).read_bytes() == reference
                print(f"  Ray, {shards} shard{'s' if shards > 1 else ''} (pass {attempt + 1}): {seconds:.1f} s "
                      f"({seconds / local:.2f}x local), per_image.csv {'equal' if equal else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
