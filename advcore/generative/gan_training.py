"""Runs a GAN config as a run of the run store, with the classifier runs' guarantees.

Each finished epoch writes its history row (critic, generator, penalty and auxiliary losses), a
checkpoint (critic, generator, both optimizers), the latest generator.keras and critic.keras, and a
sample grid (one row per class, fixed latents) under samples/. Stop and resume as in run_training.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from advcore import models
from advcore.generative import acgan
from advcore.storage import data, images
from advcore.storage.runs import Run
from advcore.training import distribute
from advcore.training.config import UNTIL_STOPPED, GanConfig
from advcore.training.resumption import resume_point
from advcore.training.runner import (EpochControl, ProgressFile, finish, load_optimizers, mark_running, save_optimizers,
                                     stopping_notice, supervise)

HISTORY_COLUMNS = ("epoch", "critic_loss", "generator_loss", "wasserstein", "gradient_penalty", "aux_loss_real",
                   "aux_loss_fake", "aux_accuracy_real", "aux_accuracy_fake", "seconds")
GRID_COLUMNS, GRID_ROWS = 8, 10


def critic_checkpoint(model_path: Path) -> Path:
    return model_path.with_suffix(".critic.keras")


class GanRecorder(keras.callbacks.Callback):
    """Writes each finished epoch: history row, checkpoint, latest models, sample grid, status."""

    def __init__(self, run: Run, config: GanConfig, control: EpochControl, history: pd.DataFrame,
                 class_names, echo):
        super().__init__()
        self.run, self.config, self.control, self.echo = run, config, control, echo
        self.rows = history.to_dict(orient="records")
        self.class_names = class_names
        self.grid_latents = np.random.default_rng(config.seed).standard_normal(
            (GRID_COLUMNS, config.z_dim)).astype(np.float32)

    def on_epoch_end(self, epoch, logs=None):
        if not self.control.epoch_complete:
            return
        row = {name: float(logs[name]) for name in HISTORY_COLUMNS if name in logs}
        row |= {"epoch": epoch + 1, "seconds": time.perf_counter() - self.control.started}
        self.rows.append(row)
        trainer = self.model
        model_path, optimizer_path = self.run.checkpoint_paths(epoch + 1)
        model_path.parent.mkdir(parents=True, exist_ok=True)
        models.save(trainer.critic, critic_checkpoint(model_path))
        models.save(trainer.generator, model_path)
        save_optimizers(optimizer_path, trainer.optimizers)  # last: its presence marks a complete checkpoint
        self._write_samples(epoch + 1)
        self.run.write_history(pd.DataFrame(self.rows, columns=HISTORY_COLUMNS))  # before the models: a
        acgan.save(self.run.path, trainer.generator, trainer.critic)  # model always has its history row
        for old in self.run.checkpoints()[:-self.config.keep_checkpoints]:
            for path in (*self.run.checkpoint_paths(old), critic_checkpoint(self.run.checkpoint_paths(old)[0])):
                path.unlink(missing_ok=True)
        self.run.update_status(epoch=epoch + 1)
        self.echo(f"epoch {epoch + 1:>4} critic {row['critic_loss']:.3f} generator {row['generator_loss']:.3f} "
                  f"W {row['wasserstein']:.3f} GP {row['gradient_penalty']:.3f} aux acc real "
                  f"{row['aux_accuracy_real']:.1%} fake {row['aux_accuracy_fake']:.1%} {row['seconds']:.1f}s")

    def _write_samples(self, epoch: int) -> None:
        gan = acgan.ConditionalGan(self.model.generator, self.model.critic, self.class_names)
        picture = acgan.sample_grid(gan, self.grid_latents, rows=GRID_ROWS)
        self.run.samples_path().parent.mkdir(exist_ok=True)
        for path in (self.run.samples_path(epoch), self.run.samples_path()):
            images.write_png(path, picture)


def train_gan(config: GanConfig, run: Run, *, resume: bool = False, echo=print) -> str:
    """Trains until the epochs end or the run is stopped; returns finished or stopped."""
    return supervise(run, lambda stop, say: _train_gan(config, run, resume, stop, say), echo)


def _train_gan(config: GanConfig, run: Run, resume: bool, stop, say) -> str:
    history, first_epoch = pd.DataFrame(columns=HISTORY_COLUMNS), 0
    if resume:
        first_epoch, history = resume_point(run, config, config.epochs, history)
    strategy = distribute.make_strategy(config.distribute.strategy)
    dataset = data.load(config.data.dataset, data_dir=config.data.data_dir, train_size=config.data.train_size,
                        seed=config.seed, splits=("train",), image_size=config.data.image_size, fit=config.data.fit)
    steps = acgan.steps_per_epoch(len(dataset.train), config, strategy.num_replicas_in_sync)
    with strategy.scope():
        keras.utils.set_random_seed(config.seed)
        generator, critic = acgan.build(config, dataset.input_shape, dataset.num_classes)
        trainer = acgan.ACGANTrainer(generator, critic, config, dataset.num_classes)
        trainer.compile()
        if first_epoch:
            model_path, optimizer_path = run.checkpoint_paths(first_epoch)
            generator.set_weights(keras.saving.load_model(model_path, compile=False).get_weights())
            critic.set_weights(keras.saving.load_model(critic_checkpoint(model_path), compile=False).get_weights())
            load_optimizers(optimizer_path, trainer.optimizers)
            say(f"resuming {run.id} after epoch {first_epoch}")
    mark_running(run, strategy, resume, steps_per_epoch=steps, total_epochs=config.epochs)
    control = EpochControl(stop, steps, stopping_notice(run, stop, say))
    recorder = GanRecorder(run, config, control, history, dataset.class_names, say)
    total = config.epochs or UNTIL_STOPPED
    if first_epoch < total:
        trainer.fit(acgan.real_batches(dataset.train, config, first_epoch),
                    steps_per_epoch=steps, epochs=total, initial_epoch=first_epoch, shuffle=False,
                    callbacks=[control, ProgressFile(run, control), recorder],
                    verbose=1 if sys.stdout.isatty() else 0)
    acgan.save(run.path, generator, critic)
    return finish(run, stop, say, len(recorder.rows), run.path / acgan.GENERATOR_FILE)
