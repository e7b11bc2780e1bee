"""GPU acceptance check: AdvLab used on this machine as a lab uses it, in one command, with a report
to paste into a bug report.

    python benchmarks/gpu_check.py --out DIR [--flagship] [--no-art]

1. Starts the real dashboard server (`python -m app.server`) on a free localhost port, over a scratch
   runs folder, and in Chromium (where Playwright and Chromium are installed) attacks a sample image on
   the Playground: the attack runs in the server's process, on its device.
2. Meanwhile, through the real queue, scheduler and evaluation worker: an AutoAttack evaluation of the
   bundled pgd-linf model, and two runs on Fashion-MNIST (PGD-7 with mixed precision, and TRADES-10 with
   AWP), plus PGD-7 in float32 for the mixed-precision comparison. Each run gets its GPU alone, so on a
   box with fewer GPUs than jobs they take turns (the worker goes first and leaves its GPU when idle).
3. Checks that none of them fails, then measures in this process: PGD-20's throughput against the
   same number of forward+backward passes (the ceiling), and AutoAttack against IBM ART's on the same
   images (where ART is installed).
4. Writes report.json and report.md into DIR: the machine, each process's peak memory (GPU memory from
   nvidia-smi; peak resident memory on a CPU), epoch times, the figures above, and any failure.

On a GPU box the jobs are full size (3 epochs of all 60,000 images, AutoAttack on 1,000), about 8
minutes on one modern GPU; `--flagship` adds the flagship recipe (the bundled pgd-linf model's config:
TRADES with PGD-10 and AWP, small CNN x3) for 100 epochs, AutoAttacked on all 10,000 test images (hours). Without a GPU it says so and runs a small CPU
version (1 epoch of 500 images, AutoAttack on 20), which the test suite runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from advcore import devices  # noqa: E402

MODEL = ROOT / "assets" / "models" / "pgd-linf" / "model.keras"
SAMPLE = ROOT / "assets" / "samples" / "pullover.png"
DONE = ("finished", "stopped", "failed", "damaged")


def sizes(gpu: bool, flagship: bool) -> dict:
    if not gpu:
        return {"train_size": 500, "validation_size": 100, "epochs": 1, "robust_size": 50, "aa_images": 20,
                "attack_images": 500, "flagship": False, "timeout": 1200}
    return {"train_size": None, "validation_size": 5000, "epochs": 3, "robust_size": 500, "aa_images": 1000,
            "attack_images": 5000, "flagship": flagship, "timeout": 6 * 3600 if flagship else 1800}


def machine() -> dict:
    """What the report is about: GPUs as nvidia-smi and TensorFlow see them, the software, the CPU."""
    try:
        listing = subprocess.run(["nvidia-smi", "--query-gpu=index,name,memory.total,driver_version",
                                  "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        listing = ""
    seen = subprocess.run([sys.executable, "-c", "import tensorflow as tf; print(tf.__version__, "
                           "len(tf.config.list_physical_devices('GPU')))"], capture_output=True, text=True,
                          timeout=300, env=os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3"}).stdout.split()
    return {"gpus": [line.strip() for line in listing.splitlines() if line.strip()],
            "inventory": devices.describe_inventory(devices.inventory()),
            "tensorflow": seen[0] if seen else "not importable", "tensorflow_gpus": int(seen[1]) if seen else 0,
            "python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}


class MemoryWatch(threading.Thread):
    """Peak memory per process, polled every half second: GPU memory (nvidia-smi) on a GPU box, else
    peak resident memory (VmHWM). `roles()` names the processes to watch: pid -> role."""

    def __init__(self, roles, gpu: bool):
        super().__init__(daemon=True)
        self.roles, self.gpu, self.peaks, self.done = roles, gpu, {}, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.5):
            for pid, megabytes in self._sample().items():
                role = self.roles().get(pid)
                if role:
                    self.peaks[role] = max(self.peaks.get(role, 0), megabytes)

    def _sample(self) -> dict[int, int]:
        if self.gpu:
            try:
                out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,"
                                      "nounits"], capture_output=True, text=True, timeout=10).stdout
            except (OSError, subprocess.TimeoutExpired):
                return {}
            return {int(pid): int(used) for pid, used in (line.split(",") for line in out.splitlines() if "," in line)}
        peaks = {}
        for pid in self.roles():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            peaks.update({pid: int(line.split()[1]) // 1024 for line in status.splitlines()
                          if line.startswith("VmHWM:")})
        return peaks


def serve(runs: Path) -> tuple[subprocess.Popen, str]:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "app.server", "--server.port", str(port), "--server.headless",
                               "true"], cwd=ROOT, env=os.environ | {"ADVLAB_RUNS_DIR": str(runs),
                                                                    "ADVLAB_UPLOADS_DIR": str(runs.parent / "uploads")},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://localhost:{port}"
    for _ in range(600):
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return server, url
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the app server did not come up in 2 minutes")


def playground(url: str, out: Path) -> dict:
    """The Playground in Chromium: the bundled standard model, the pullover sample, attacked (FGSM, the
    page's default) in the server until the verdict shows. On a failure the page's screenshot goes to
    `out`."""
    try:
        from playwright.sync_api import Error as BrowserError, sync_playwright
    except ImportError:
        return {"skipped": "Playwright is not installed (pip install -r requirements-dev.txt)"}
    chromium = next((path for path in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(path).exists()), None)
    with sync_playwright() as play:
        try:
            browser = play.chromium.launch(executable_path=chromium)
        except Exception as error:  # no browser on this machine: the rest of the check goes on
            return {"skipped": f"Chromium did not start: {str(error).splitlines()[0]}"}
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(180_000)
        began = time.perf_counter()
        try:
            text = _attack_the_sample(page, url)
        except BrowserError as error:  # reported as the check's failure; the queued jobs are still waited for
            page.screenshot(path=out / "playground-failure.png")
            return {"error": " ".join(line.strip() for line in str(error).splitlines()[:3]),
                    "screenshot": "playground-failure.png"}
        finally:
            browser.close()
    return {"verdict": text, "seconds": round(time.perf_counter() - began, 1)}


def _attack_the_sample(page, url: str) -> str:
    page.goto(f"{url}/playground")
    page.get_by_label("Model", exact=True).wait_for()
    _settled(page)
    page.get_by_label("Model", exact=True).click()
    page.get_by_role("option", name="standard (bundled)").click()
    uploader = page.locator('[data-testid="stFileUploader"]').filter(has_text="Image (PNG")
    uploader.locator('input[type="file"]').set_input_files(str(SAMPLE))
    # The upload's rerun is over (its first verdict, with no truth yet) before the class is chosen: a
    # dropdown opened while a rerun redraws the page can close again before its option is clicked.
    page.get_by_text("(true class unknown").first.wait_for()
    _settled(page)
    # At 1400x900 the class field sits on the window's lower edge. Clicking it there opens its menu and
    # focuses it; the browser then scrolls the page a few pixels to show the focused field, and the
    # menu closes on that scroll. So it is brought into view first, as a person would.
    true_class = page.get_by_label("True class", exact=True)
    true_class.evaluate("field => field.scrollIntoView({block: 'center'})")
    true_class.click()
    page.get_by_role("option", name="Pullover", exact=True).click()
    verdict = page.get_by_text(re.compile(r"Pullover → \S+.*: (not )?fooled")).first
    verdict.wait_for()
    return verdict.inner_text()


def _settled(page) -> None:
    """The page's script run over and no faded element of an earlier run left."""
    page.wait_for_function("""() => {
        const app = document.querySelector('[data-testid="stApp"]');
        return app && !['running', 'rerunRequested'].includes(app.getAttribute('data-test-script-state'))
            && !document.querySelector('[data-stale="true"]');
    }""")


def queue_jobs(root: Path, size: dict, gpu: bool) -> dict:
    """The evaluation first (the worker takes a GPU before the runs do), then the runs."""
    from advcore.evaluation import plans
    from advcore.training.config import TrainConfig
    from app import jobs

    plan = plans.Plan.from_dict({"models": [{"label": "pgd-linf", "path": str(MODEL)}],
                                 "attacks": [{"name": "AutoAttack", "method": "autoattack", "options": {}}],
                                 "eps": {"linf": [0.1]}, "count": size["aa_images"], "batch_size": 500})
    queued = {"evaluation": jobs.submit_evaluation(plan, root, "autoattack")}
    base = {"data": {"train_size": size["train_size"], "validation_size": size["validation_size"]},
            "schedule": {"kind": "constant", "epochs": size["epochs"]},
            "validation": {"robust_size": size["robust_size"]}, "distribute": {"gpus": 1 if gpu else 0}}
    recipes = {"pgd7-mixed" if gpu else "pgd7": {"attack": {"method": "pgd", "steps": 7},
                                                 "distribute": {"mixed_precision": gpu}},
               "trades10-awp": {"attack": {"method": "pgd", "steps": 10}, "objective": {"kind": "trades"},
                                "awp": {"enabled": True}}}
    if gpu:
        recipes["pgd7-float32"] = {"attack": {"method": "pgd", "steps": 7}}
    for name, recipe in recipes.items():
        content = _merged(base, recipe) | {"name": name}
        queued[name] = jobs.submit(TrainConfig.from_dict(content), root)
    if size["flagship"]:
        content = json.loads((MODEL.parent / "config.json").read_text())
        content = _merged(content, {"schedule": {"epochs": 100}, "distribute": {"gpus": 1}}) | {"name": "flagship"}
        queued["flagship"] = jobs.submit(TrainConfig.from_dict(content), root)
    return queued


def autoattack_flagship(run) -> dict:
    """The flagship run's model under AutoAttack on all 10,000 test images (after the queue is done)."""
    from advcore import models
    from advcore.attacks import autoattack
    from advcore.storage import data

    test = data.load("fashion_mnist", splits=("test",)).test
    began = time.perf_counter()
    result = autoattack.autoattack(models.load(run.model_path), test.x, test.y, eps=0.1, batch_size=500)
    return {"images": len(test.y), "clean_accuracy": result.clean_accuracy, "robust_accuracy": result.robust_accuracy,
            "seconds": round(time.perf_counter() - began)}


def _merged(base: dict, changes: dict) -> dict:
    merged = json.loads(json.dumps(base))
    for key, value in changes.items():
        merged[key] = _merged(merged.get(key, {}), value) if isinstance(value, dict) else value
    return merged


def roles(root: Path, server: subprocess.Popen, queued: dict) -> dict[int, str]:
    from advcore.evaluation import worker

    found = {server.pid: "server"}
    record = worker.live_record(root)
    if record:
        found[record["pid"]] = "evaluation worker"
    for name, job in queued.items():
        pid = job.recorded_status().get("pid")
        if pid and name != "evaluation":
            found[pid] = f"run {name}"
    return found


def stop_background(root: Path) -> None:
    """The evaluation worker and the training scheduler outlive the server by design; the check's own
    ones end with the check, and it waits for them to go, so that none writes into the scratch runs
    folder while it is deleted."""
    import signal

    from advcore.evaluation import worker
    from advcore.jobs import scheduler
    from advcore.storage import locks
    from advcore.storage.runs import process_alive

    record = worker.live_record(root)  # a pid proven to be this root's worker
    pids = [record["pid"]] if record else []
    holder = locks.holder(scheduler.lock_path(root))  # the process holding this root's scheduler lock
    if holder is not None and holder > 0:
        pids.append(holder)
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while any(process_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)


def wait_all(queued: dict, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = {name: job.status() for name, job in queued.items()}
        if all(status["status"] in DONE for status in statuses.values()):
            return statuses
        time.sleep(2)
    return {name: job.status() | {"error": "still running when the check's time ran out"}
            for name, job in queued.items()}


def epoch_times(run) -> dict:
    history = run.history()
    seconds = history["seconds"].tolist() if "seconds" in history else []
    return {"epochs": len(seconds), "first": seconds[0] if seconds else None,
            "median_after_first": float(sorted(seconds[1:])[len(seconds[1:]) // 2]) if len(seconds) > 1 else None,
            "last_val_accuracy": history["val_accuracy"].iloc[-1] if len(history) else None,
            "last_val_robust_accuracy": history["val_robust_accuracy"].iloc[-1] if len(history) else None}


def attack_ceiling(count: int) -> dict:
    """PGD-20 images per second, and the same number of forward+backward passes (attack_speed's ceiling)."""
    import attack_speed
    from advcore import attacks, models
    from advcore.storage import data

    test = data.load("fashion_mnist", splits=("test",)).test
    x, y = test.x[:count], test.y[:count]
    model = models.load(ROOT / "assets" / "models" / "standard" / "model.keras")
    spec = attacks.pgd(attack_speed.EPS, steps=attack_speed.STEPS, step_size=attack_speed.STEP_SIZE)
    pgd = attack_speed.best_time(lambda: attacks.attack(model, x, y, spec, batch_size=attack_speed.BATCH), 3)
    ceiling = attack_speed.best_time(attack_speed.forward_backward(model, x, y), 3)
    return {"images": count, "pgd20_images_per_s": round(count / pgd), "ceiling_images_per_s": round(count / ceiling),
            "share_of_ceiling": round(ceiling / pgd, 3)}


def autoattack_against_art(count: int) -> dict:
    import autoattack_speed
    from advcore import models
    from advcore.storage import data

    test = data.load("fashion_mnist", splits=("test",)).test
    x, y = test.x[:count], test.y[:count]
    model = models.load(MODEL)
    ours = autoattack_speed.advlab(model, x, y)
    try:
        theirs = autoattack_speed.art(model, x, y)
    except ImportError:
        return {"images": count, "advlab": ours, "art": "not installed"}
    return {"images": count, "advlab": ours, "art": theirs,
            "speedup_on_shared_components": round(theirs["total"] / ours["without_fab"], 2)}


def markdown(report: dict) -> str:
    lines = [f"# AdvLab GPU check ({'GPU' if report['gpu'] else 'CPU version: no GPU found'})", "",
             f"- verdict: **{report['verdict']}**", f"- machine: {json.dumps(report['machine'])}",
             f"- wall time: {report['seconds']:.0f} s", "", "## Jobs", "", "| job | status | notes |", "| --- | --- | --- |"]
    for name, status in report["jobs"].items():
        lines.append(f"| {name} | {status['status']} | {status.get('error') or ''} |")
    lines += ["", "## Peak memory (MB)", "", "| process | peak |", "| --- | --- |"]
    lines += [f"| {role} | {peak:,} |" for role, peak in sorted(report["peak_memory_mb"].items())]
    lines += ["", "## AutoAttack through the worker", ""]
    lines += [f"- {cell['model']}, eps {cell['eps']:g}, {cell['count']:,} images: clean {cell['clean_accuracy']:.1%}, "
              f"robust {cell['robust_accuracy']:.1%}, {cell['seconds']:.0f} s" for cell in report["evaluation_cells"]]
    lines += ["", "## Figures", "", "```json", json.dumps({key: report[key] for key in
                                                          ("playground", "epochs", "mixed_precision", "attack",
                                                           "autoattack", "flagship") if key in report},
                                            indent=2, default=str, ensure_ascii=False), "```"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for report.json and report.md")
    parser.add_argument("--flagship", action="store_true", help="also the flagship recipe, 100 epochs (hours)")
    parser.add_argument("--no-art", action="store_true", help="skip the comparison with IBM ART")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    report = {"machine": machine()}
    gpu = report["machine"]["tensorflow_gpus"] > 0
    report["gpu"] = gpu
    if not gpu:
        print("No GPU that TensorFlow can use: running the small CPU version.")
    size = sizes(gpu, args.flagship)
    os.environ.setdefault("ADVLAB_MAX_RUNS", str(max(2, len(devices.inventory()))))
    with tempfile.TemporaryDirectory(prefix="advlab-gpu-check-") as scratch:
        root = Path(scratch) / "runs"
        os.environ["ADVLAB_RUNS_DIR"] = str(root)
        server, url = serve(root)
        queued = {}
        watch = MemoryWatch(lambda: roles(root, server, queued), gpu)
        watch.start()
        try:
            queued.update(queue_jobs(root, size, gpu))
            report["playground"] = playground(url, args.out)
            statuses = wait_all(queued, size["timeout"])
        finally:
            watch.done.set()
            server.terminate()
            server.wait(timeout=60)
            stop_background(root)
        report["jobs"] = {name: {key: status.get(key) for key in ("status", "error", "device", "gpus")}
                          for name, status in statuses.items()}
        report["peak_memory_mb"] = watch.peaks
        report["epochs"] = {name: epoch_times(job) for name, job in queued.items() if name != "evaluation"}
        mixed, single = report["epochs"].get("pgd7-mixed", {}), report["epochs"].get("pgd7-float32", {})
        report["mixed_precision"] = ({"epoch_seconds_mixed": mixed["median_after_first"],
                                      "epoch_seconds_float32": single["median_after_first"],
                                      "speedup": round(single["median_after_first"] / mixed["median_after_first"], 2)}
                                     if single.get("median_after_first") and mixed.get("median_after_first")
                                     else "GPU only")
        evaluation = json.loads((queued["evaluation"].path / "results.json").read_text()) \
            if (queued["evaluation"].path / "results.json").exists() else {}
        report["evaluation_cells"] = evaluation.get("cells", [])
    report["attack"] = attack_ceiling(size["attack_images"])
    report["autoattack"] = ("skipped (--no-art)" if args.no_art or not gpu
                            else autoattack_against_art(size["aa_images"]))
    if "flagship" in queued and report["jobs"]["flagship"]["status"] == "finished":
        report["flagship"] = autoattack_flagship(queued["flagship"])
    failed = [name for name, status in report["jobs"].items() if status["status"] != "finished"]
    if "skipped" not in report["playground"] and "verdict" not in report["playground"]:
        failed.append("playground")
    report["verdict"] = "passed" if not failed else f"failed: {', '.join(failed)}"
    report["seconds"] = time.perf_counter() - began
    (args.out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    (args.out / "report.md").write_text(markdown(report))
    print(markdown(report))
    sys.exit(0 if not failed else 1)


if __name__ == "__main__":
    main()
