"""Runs a training config as a run of the run store: schedule, checks, records, stop and resume.

Every finished epoch is written before the next begins (history row, checkpoint with optimizer
state, latest model), so SIGKILL loses at most the epoch in progress. SIGINT/SIGTERM finish the
current batch, save the model and end the run as `stopped`. `resume=True` restarts from the last
complete checkpoint with the same schedule position, optimizer state, data order and history.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from advcore import devices, models
from advcore.evaluation import robustness
from advcore.generative import acgan, unrestricted
from advcore.storage import data, files, locks
from advcore.storage.runs import Run, RunError, RunRefused, TrainingDiverged, now, process_start_ticks
from advcore.training import distribute
from advcore.training.config import ADVERSARIAL, RMSE_METHODS, UNTIL_STOPPED, TrainConfig, phase
from advcore.training.resumption import resume_point
from advcore.training.trainer import (AdversarialTrainer, batches_per_epoch, current_learning_rate, distributed_batches,
                                      make_optimizer)

HISTORY_COLUMNS = ("epoch", "phase", "loss", "accuracy", "val_loss", "val_accuracy", "val_robust_accuracy",
                   "val_gan_accuracy", "val_unrestricted_accuracy", "kl", "consistency", "lipschitz_penalty", "psi",
                   "learning_rate",
                   "eps", "seconds", "warning")
GAN_CHECK_SEED = 1_000_003  # the GAN checks' latents: the same for every run and epoch, never trained on


class StopRequest:
    """Set by SIGINT or SIGTERM, or by the run's stop file (`Run.request_stop`: the way to reach a
    process on another machine, a Ray job's); the training loop checks it after every batch, the
    file at most once a second."""

    FILE_CHECK_SECONDS = 1.0

    def __init__(self, stop_file: Path | None = None):
        self.signal_name: str | None = None
        self.stop_file = stop_file
        self._file_checked = -math.inf

    @property
    def requested(self) -> bool:
        if self.signal_name is None and self.stop_file is not None:
            if time.monotonic() - self._file_checked >= self.FILE_CHECK_SECONDS:
                self._file_checked = time.monotonic()
                if self.stop_file.exists():
                    self.signal_name = "stop request"
        return self.signal_name is not None

    def install(self) -> dict:
        """Takes over SIGINT and SIGTERM; returns the previous handlers for `restore`. Only a main thread
        can: a Ray Train worker trains in another thread, and its driver stops the worker group."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}

    @staticmethod
    def restore(previous: dict) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        self.signal_name = signal.Signals(signum).name


class EpochControl(keras.callbacks.Callback):
    """Stops after the current batch when asked, and knows whether the epoch that just ended ran all
    its batches (a stopped epoch is not recorded). `on_begin(epoch)` prepares each epoch.

    Several workers agree on every step, so one of them cannot leave an epoch alone: there each stops
    only at an epoch's end (the others, which do not see the request, are then ended by the group's
    driver, `jobs.ray_training`)."""

    def __init__(self, stop: StopRequest, steps_per_epoch: int, on_stop, on_begin=None):
        super().__init__()
        self.stop, self.steps_per_epoch, self.on_stop, self.on_begin = stop, steps_per_epoch, on_stop, on_begin
        self.epoch, self.batches, self.started = 0, 0, 0.0
        self.at_epoch_ends = distribute.cluster_workers() > 1

    def on_epoch_begin(self, epoch, logs=None):
        if self.on_begin:
            self.on_begin(epoch)
        self.epoch, self.batches, self.started = epoch + 1, 0, time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1
        if not self.at_epoch_ends:
            self._stop_if_asked()

    def on_epoch_end(self, epoch, logs=None):
        if self.at_epoch_ends:
            self._stop_if_asked()

    def _stop_if_asked(self):
        if self.stop.requested and not self.model.stop_training:
            self.model.stop_training = True
            self.on_stop()

    @property
    def epoch_complete(self) -> bool:
        return self.batches == self.steps_per_epoch


class DivergenceCheck(keras.callbacks.Callback):
    """Fails the run once the epoch's running loss is not finite, about once a second and at the end of
    each epoch (the running mean stays NaN once one step's loss was, so nothing slips through, and the
    compiled steps are not held up by a read after each one)."""

    def __init__(self, control: EpochControl, every_seconds: float = 1.0):
        super().__init__()
        self.control, self.every, self.checked = control, every_seconds, 0.0

    def on_train_batch_end(self, batch, logs=None):
        if time.monotonic() - self.checked >= self.every:
            self._check(logs)

    def on_epoch_end(self, epoch, logs=None):
        self._check(logs)

    def _check(self, logs):
        self.checked = time.monotonic()
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            epoch = self.control.epoch
            raise TrainingDiverged(
                f"the loss became {float(loss)} in epoch {epoch} (seen at step {self.control.batches}): lower the "
                f"learning rate (it was {current_learning_rate(self.model.optimizer):.3g}); the {epoch - 1} "
                "epochs before it are kept")


class ProgressFile(keras.callbacks.Callback):
    """Writes the position inside the running epoch about once a second, for progress bars."""

    def __init__(self, run: Run, control: EpochControl, every_seconds: float = 1.0):
        super().__init__()
        self.run, self.control, self.every, self.written = run, control, every_seconds, 0.0
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch + 1
        self._write()

    def on_train_batch_end(self, batch, logs=None):
        if time.monotonic() - self.written >= self.every:
            self._write()

    def _write(self):
        self.written = time.monotonic()
        files.write_json(self.run.progress_path, {"epoch": self.epoch, "batch": self.control.batches,
                                                  "steps_per_epoch": self.control.steps_per_epoch,
                                                  "time": now()})


class RobustCheck(keras.callbacks.Callback):
    """Robust accuracy on a fixed validation subset under a fixed PGD, after every epoch."""

    def __init__(self, control: EpochControl, classifier, x, y, spec):
        super().__init__()
        self.control, self.classifier, self.x, self.y, self.spec = control, classifier, x, y, spec

    def on_epoch_end(self, epoch, logs=None):
        if self.control.epoch_complete and len(self.x):
            logs["val_robust_accuracy"] = robustness.robust_accuracy(
                self.classifier, self.x, self.y, self.spec).robust_accuracy


class GanCheck(keras.callbacks.Callback):
    """Accuracy on fixed GAN samples (one latent each, classes in turn) and on unrestricted examples
    searched from them against the current weights, after every epoch: the augmentation study's
    columns, and the seed's plot of how fast a classifier learns the GAN's images."""

    def __init__(self, control: EpochControl, classifier, gan, size: int, steps: int):
        super().__init__()
        self.control, self.classifier, self.gan = control, classifier, gan
        self.source = np.arange(size) % gan.num_classes
        self.z0 = gan.latents(size, GAN_CHECK_SEED)
        self.settings = unrestricted.LatentAttack(steps=steps)

    def on_epoch_end(self, epoch, logs=None):
        if self.control.epoch_complete and len(self.source):
            result = unrestricted.attack(self.gan, self.classifier, self.source, z0=self.z0, settings=self.settings,
                                         seed=GAN_CHECK_SEED)
            logs["val_gan_accuracy"] = float(np.mean(result.clean_predictions == self.source))
            logs["val_unrestricted_accuracy"] = result.accuracy


def best_epoch(rows: list[dict]) -> tuple[int, float] | None:
    """(epoch, validation robust accuracy) of the first epoch with the highest one, or None."""
    measured = [(row["val_robust_accuracy"], -row["epoch"]) for row in rows if pd.notna(row.get("val_robust_accuracy"))]
    if not measured:
        return None
    robust, negative_epoch = max(measured)
    return -negative_epoch, robust


class Recorder(keras.callbacks.Callback):
    """Writes each finished epoch to the run: history row, checkpoint, status, and the run's model
    (the latest epoch's, or with `validation.keep_best` the best epoch's so far)."""

    def __init__(self, run: Run, config: TrainConfig, control: EpochControl, history: pd.DataFrame,
                 chief: bool, echo):
        super().__init__()
        self.run, self.config, self.control, self.chief, self.echo = run, config, control, chief, echo
        self.rows = history.to_dict(orient="records")
        self.collapsed: str | None = None

    def _best_robust(self) -> float:
        values = [r["val_robust_accuracy"] for r in self.rows
                  if r.get("phase") == ADVERSARIAL and pd.notna(r.get("val_robust_accuracy"))]
        return max(values, default=float("nan"))

    def _collapse_warning(self, epoch_phase: str, robust: float | None) -> str:
        best = self._best_robust()
        ratio = self.config.validation.collapse_ratio
        if epoch_phase != ADVERSARIAL or robust is None or not best > 0.05 or robust >= ratio * best:
            return ""
        return (f"catastrophic overfitting? robust accuracy fell to {robust:.1%} from a best of {best:.1%} "
                f"(below {ratio:.0%} of it)")

    def on_epoch_end(self, epoch, logs=None):
        if not self.control.epoch_complete:
            return
        trainer = self.model
        epoch_phase = phase(self.config, epoch)
        robust = logs.get("val_robust_accuracy")
        warning = self._collapse_warning(epoch_phase, robust)
        row = {"epoch": epoch + 1, "phase": epoch_phase, "loss": logs.get("loss"),
               "accuracy": logs.get("accuracy"), "val_loss": logs.get("val_loss"),
               "val_accuracy": logs.get("val_accuracy"), "val_robust_accuracy": robust,
               "val_gan_accuracy": logs.get("val_gan_accuracy"),
               "val_unrestricted_accuracy": logs.get("val_unrestricted_accuracy"),
               "kl": logs.get("kl") if epoch_phase == ADVERSARIAL else None, "consistency": logs.get("consistency"),
               "lipschitz_penalty": logs.get("lipschitz_penalty"), "psi": trainer.current_psi(),
               "learning_rate": current_learning_rate(trainer.optimizer),
               "eps": trainer.current_eps() if epoch_phase == ADVERSARIAL else 0.0,
               "seconds": time.perf_counter() - self.control.started, "warning": warning}
        self.rows.append(row)
        self._save(epoch + 1)
        self.echo(_epoch_line(row))
        if warning and self.config.validation.stop_on_collapse:
            self.collapsed = warning
            trainer.stop_training = True

    def _save(self, epoch: int) -> None:
        trainer = self.model
        if not self.chief:  # other workers must save too, but somewhere nobody reads
            with tempfile.TemporaryDirectory() as scratch:
                models.save(trainer.classifier, Path(scratch) / "model.keras")
            return
        model_path, optimizer_path = self.run.checkpoint_paths(epoch)
        models.save(trainer.classifier, model_path)
        save_optimizer(trainer, optimizer_path)
        self.run.write_history(pd.DataFrame(self.rows, columns=HISTORY_COLUMNS))
        best = best_epoch(self.rows) if self.config.validation.keep_best else None
        if best is None or best[0] == epoch:
            models.save(trainer.classifier, self.run.model_path)
        if best is not None:
            self.run.update_status(best_epoch=best[0], best_val_robust_accuracy=best[1])
        for old in self.run.checkpoints()[:-self.config.keep_checkpoints]:
            for path in self.run.checkpoint_paths(old):
                path.unlink(missing_ok=True)
        self.run.update_status(epoch=epoch, phase=self.rows[-1]["phase"])


def _epoch_line(row: dict) -> str:
    def pct(value):
        return "-" if value is None or pd.isna(value) else f"{value:.1%}"
    line = (f"epoch {row['epoch']:>4} {row['phase']:<11} loss {row['loss']:.4f} acc {pct(row['accuracy'])} "
            f"val_acc {pct(row['val_accuracy'])} val_robust {pct(row['val_robust_accuracy'])} "
            f"lr {row['learning_rate']:.2e} {row['seconds']:.1f}s")
    if row.get("psi") is not None:
        line += f" psi {row['psi']:.1f} penalty {row['lipschitz_penalty']:.3g}"
    if row.get("val_gan_accuracy") is not None:
        line += f" gan_acc {pct(row['val_gan_accuracy'])} unrestricted_acc {pct(row['val_unrestricted_accuracy'])}"
    return line + (f"  WARNING: {row['warning']}" if row["warning"] else "")


def save_optimizers(path: Path, optimizers: list, **counters) -> None:
    """The optimizers' variables in order, and named integer counters, as one .npz file."""
    arrays = {f"v{i:04d}": np.asarray(v) for i, v in enumerate(v for o in optimizers for v in o.variables)}
    arrays |= {name: np.asarray(value) for name, value in counters.items()}
    with files.atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)


def load_optimizers(path: Path, optimizers: list, counters: tuple[str, ...] = ()) -> dict:
    """Restores what `save_optimizers` wrote into built optimizers; returns the counters (numbers)."""
    variables = [v for o in optimizers for v in o.variables]
    with np.load(path) as saved:
        stored = [name for name in saved.files if name.startswith("v")]
        if len(stored) != len(variables):
            raise ValueError(f"{path}: holds {len(stored)} optimizer variables, the optimizers have "
                             f"{len(variables)}; was the config changed?")
        for i, variable in enumerate(variables):
            variable.assign(saved[f"v{i:04d}"])
        return {name: saved[name].item() for name in counters if name in saved.files}


_TRAINER_STATE = ("adversarial_steps", "psi_integral")  # trainer variables a checkpoint keeps


def save_optimizer(trainer: AdversarialTrainer, path: Path) -> None:
    save_optimizers(path, [trainer.optimizer], **{name: getattr(trainer, name).numpy() for name in _TRAINER_STATE})


def load_optimizer(trainer: AdversarialTrainer, path: Path) -> None:
    """Restores the optimizer and the trainer's counters (checkpoints older than psi lack its r: 0)."""
    trainer.optimizer.build(trainer.classifier.trainable_variables)
    for name, value in load_optimizers(path, [trainer.optimizer], _TRAINER_STATE).items():
        getattr(trainer, name).assign(value)


def datasets(config: TrainConfig, say=None) -> tuple[data.Dataset, data.Split]:
    """The training split less the validation images held out of it (then `train_size` of the rest),
    and those validation images; a folder with its own val/ sub-folder validates on that (`validation_size`
    of it). No test file is read."""
    dataset = data.load(config.data.dataset, data_dir=config.data.data_dir, seed=config.seed, splits=("train",),
                        image_size=config.data.image_size, fit=config.data.fit, say=say)
    if dataset.validation is not None:
        size = config.data.validation_size
        validation = (dataset.validation.take(slice(0, 0)) if size == 0
                      else data.subset(dataset.validation, size, config.seed))
        return dataclasses.replace(dataset, train=data.subset(dataset.train, config.data.train_size,
                                                              config.seed)), validation
    size = config.data.validation_size
    size = data.default_validation_size(dataset) if size is None else size
    if size >= len(dataset.train):
        raise ValueError(f"data.validation_size: {size} validation images would leave none to train on "
                         f"({dataset.name}'s training split holds {len(dataset.train)})")
    train, validation = data.hold_out(dataset.train, size, config.seed)
    train = data.subset(train, config.data.train_size, config.seed)
    return dataclasses.replace(dataset, train=train), validation


def _load_gan(config: TrainConfig, dataset):
    """The config's GAN, checked against the dataset, or None when the config names none."""
    if config.generator is None:
        return None
    gan = acgan.load(config.generator)
    if gan.image_shape != dataset.input_shape or gan.num_classes != dataset.num_classes:
        raise ValueError(f"generator: the GAN in {config.generator} makes {gan.num_classes} classes of "
                         f"{gan.image_shape} images; {dataset.name} has {dataset.num_classes} classes of "
                         f"{dataset.input_shape}")
    return gan


def _robust_spec(config: TrainConfig, input_shape):
    """PGD in the training attack's norm and eps; RMSE eps (rmse_ball, l2_min) become the equal L2
    radius, eps * sqrt(pixels)."""
    from advcore import attacks

    eps = config.validation.eps if config.validation.eps is not None else config.attack.eps
    if config.attack.method in RMSE_METHODS:
        return attacks.pgd(eps * math.sqrt(math.prod(input_shape)), norm="l2", steps=config.validation.steps)
    return attacks.pgd(eps, norm=config.attack.norm, steps=config.validation.steps)


def supervise(run: Run, work, echo=print) -> str:
    """Runs `work(stop, say)` as the run's one process: SIGINT/SIGTERM become a stop request, every line
    said goes to the terminal and train.log, and an error marks the run failed (then propagates).

    A damaged status.json, or a run another process trains, raises RunRefused and leaves the run as it was."""
    try:
        run.recorded_status()
    except RunError as error:
        raise RunRefused(f"{error}; the file is left as it is") from None
    with contextlib.ExitStack() as owning:
        try:
            owning.enter_context(locks.hold(run.lock_path, wait=2.0))
            log = owning.enter_context(files.open_append(run.log_path))
        except locks.LockHeld as held:
            raise RunRefused(f"run {run.id} is being trained by process {held.pid}: one process per run") from None
        except files.FileProblem as problem:
            raise RunRefused(f"run {run.id}: {problem}; the run is left as it is") from None
        return _supervised(run, work, echo, log)


def _supervised(run: Run, work, echo, log) -> str:
    def say(line: str) -> None:
        echo(line)
        log.write(line + "\n")

    stop = StopRequest(run.stop_request_path)
    previous_handlers = stop.install()
    try:
        return work(stop, say)
    except RunRefused:
        raise
    except BaseException as error:
        log.write(traceback.format_exc())
        run.update_status(status="failed", ended=now(), error=f"{type(error).__name__}: {error}")
        raise
    finally:
        StopRequest.restore(previous_handlers)


def train(config: TrainConfig, run: Run, *, resume: bool = False, echo=print) -> str:
    """Trains until the schedule ends, the run is stopped, or robust accuracy collapses (if asked).

    Returns the final status: finished or stopped. Raises (with status failed) on errors.
    """
    return supervise(run, lambda stop, say: _train(config, run, resume, stop, say), echo)


def mark_running(run: Run, strategy, resume: bool, **fields) -> None:
    """Status running, with this process's identity, the device, its GPUs and (on resume) when it resumed."""
    status = run.recorded_status()
    run.update_status(status="running", pid=os.getpid(), pid_start=process_start_ticks(os.getpid()),
                      host=socket.gethostname(), device=distribute.describe(strategy), gpus=list(devices.visible()),
                      started=status.get("started", now()),
                      error=None, **fields, **({"resumed": now()} if resume else {}))


def stopping_notice(run: Run, stop: StopRequest, say):
    def stopping():
        run.update_status(status="stopping", signal=stop.signal_name)
        say(f"{stop.signal_name}: finishing the current batch, then saving")
    return stopping


def finish(run: Run, stop: StopRequest, say, epochs: int, saved: Path, reason: str = "schedule complete") -> str:
    """Ends the run as stopped (on a stop request) or finished, and says so."""
    if stop.requested:
        run.update_status(status="stopped", ended=now(), signal=stop.signal_name)
        say(f"stopped after {epochs} finished epochs; model saved to {saved}")
        return "stopped"
    run.update_status(status="finished", ended=now(), reason=reason)
    say(f"finished: {reason}; {epochs} epochs; model saved to {saved}")
    return "finished"


def _train(config: TrainConfig, run: Run, resume: bool, stop: StopRequest, say) -> str:
    strategy = distribute.make_strategy(config.distribute.strategy)
    chief = distribute.chief_by_tf_config()
    first_epoch, history = 0, pd.DataFrame(columns=HISTORY_COLUMNS)
    if resume:
        first_epoch, history = resume_point(run, config, config.schedule.total_epochs, history)
    dataset, validation = datasets(config, say)
    if data.is_folder(config.data.dataset):
        skipped = data.folder_skipped(config.data.dataset, say=say)  # the test split's too, named now
        for file in skipped:
            say(f"skipped {file.path} ({file.split or 'no split'}): {file.reason}")
        if chief:
            run.write_skipped(skipped)
    counts = np.bincount(dataset.train.y, minlength=dataset.num_classes)
    per_class = ", ".join(f"{name} {count:,}" for name, count in zip(dataset.class_names, counts))
    say(f"{dataset.name}: {len(dataset.train):,} training and {len(validation):,} validation images of "
        f"{dataset.num_classes} classes ({per_class}), input {dataset.input_shape}")
    steps_per_epoch = batches_per_epoch(len(dataset.train), config.batch_size, strategy.num_replicas_in_sync)
    with strategy.scope():
        keras.utils.set_random_seed(config.seed)
        if config.model.path:
            classifier = models.load(config.model.path)
        else:
            classifier = models.build(config.model.architecture, dataset.input_shape, dataset.num_classes,
                                      config.model.width, config.model.activation, config.model.depth,
                                      config.model.growth, config.model.pretrained)
        models.check_compatible(classifier, dataset.input_shape, dataset.num_classes)
        gan = _load_gan(config, dataset)
        trainer = AdversarialTrainer(classifier, config, steps_per_epoch, gan)
        trainer.compile(optimizer=make_optimizer(config, steps_per_epoch))
        trainer.optimizer.build(classifier.trainable_variables)
        if first_epoch:
            model_path, optimizer_path = run.checkpoint_paths(first_epoch)
            classifier.set_weights(models.load(model_path, logits=False).get_weights())
            load_optimizer(trainer, optimizer_path)
            say(f"resuming {run.id} after epoch {first_epoch}")
    total = config.schedule.total_epochs or UNTIL_STOPPED
    mark_running(run, strategy, resume, steps_per_epoch=steps_per_epoch, total_epochs=config.schedule.total_epochs,
                 class_names=list(dataset.class_names), input_shape=list(dataset.input_shape))

    def set_phase(epoch):
        trainer.adversarial_phase.assign(phase(config, epoch) == ADVERSARIAL)

    control = EpochControl(stop, steps_per_epoch, stopping_notice(run, stop, say), set_phase)
    recorder = Recorder(run, config, control, history, chief, say)
    robust = validation.take(slice(0, config.validation.robust_size))  # a folder's images decoded at each check
    robust_check = RobustCheck(control, classifier, robust.x, robust.y, _robust_spec(config, dataset.input_shape))
    callbacks = [control, DivergenceCheck(control), robust_check, recorder,
                 keras.callbacks.TensorBoard(str(run.tensorboard_dir), write_graph=False)]
    if gan is not None and config.validation.gan_size:
        callbacks.insert(3, GanCheck(control, classifier, gan, config.validation.gan_size, config.validation.gan_steps))
    if chief:
        callbacks.insert(1, ProgressFile(run, control))
    if first_epoch < total:
        trainer.fit(distributed_batches(strategy, dataset.train, config.batch_size, config.seed,
                                        config.data.augment, first_epoch),
                    steps_per_epoch=steps_per_epoch, epochs=total, initial_epoch=first_epoch,
                    validation_data=data.batches(validation, 500) if len(validation) else None,
                    shuffle=False, callbacks=callbacks, verbose=1 if sys.stdout.isatty() else 0)
    if chief and not config.validation.keep_best:
        models.save(classifier, run.model_path)
    return finish(run, stop, say, len(recorder.rows), run.model_path, recorder.collapsed or "schedule complete")
