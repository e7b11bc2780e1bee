"""Adversarial training on Keras `fit`: a custom `train_step`, an epoch schedule, a data pipeline.

`AdversarialTrainer` wraps any logits classifier. In an adversarial epoch each step builds
adversarial examples of the batch with `attacks.perturb` (model in inference mode, current weights,
result cut from the weight gradient) and trains on them alone (`adversarial`), on the clean batch
plus them (`double`), or on the batch with a share replaced by them (`split`); the clean and
adversarial parts are weighted by lambda as `(n_c L_c + lambda n_a L_a) / (n_c + lambda n_a)`.
The adversarial part's loss is the config's objective (cross-entropy, TRADES or MART) over each
clean image and its example; with AWP its gradient is taken at perturbed weights.
Which epochs are adversarial is a schedule (constant, interleaved, warm-up) set per epoch by a
callback, so a schedule switch costs no retracing. With `config.lipschitz` every step (vanilla or
adversarial) also pays seed 004's Lipschitz penalty, whose weight psi adapts to the class loss.
With `config.noise` every step trains on noisy copies of its inputs (for randomized smoothing), the
objective averaged over them, plus their consistency terms.
"""

from __future__ import annotations

from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from advcore import attacks
from advcore.attacks import rmse_descent
from advcore.generative.acgan import ConditionalGan
from advcore.generative.unrestricted import UNTARGETED, LatentAttack, latent_search
from advcore.training import awp, distribute, lipschitz, objectives
from advcore.training.config import (ADVERSARIAL, GENERATIVE_METHODS, PAIRED_OBJECTIVES, RMSE_METHODS, UNTIL_STOPPED,
                                     AttackConfig, TrainConfig)


def pixel_attack(attack: AttackConfig) -> attacks.AttackSpec:
    """The AttackSpec a config's pixel attack runs as (eps may be rescaled per batch by the trainer)."""
    if attack.generative or attack.method in RMSE_METHODS:
        raise ValueError(f"the {attack.method} method is not an AttackSpec attack")
    if attack.method == "pgd":
        return attacks.pgd(attack.eps, norm=attack.norm, steps=attack.steps or 7, step_size=attack.step_size)
    options = {"random_start": attack.method == "fgsm_rs", "step_size": attack.step_size}
    if attack.method == "ll_fgsm":
        options["target"] = "least_likely"
    return attacks.AttackSpec(eps=attack.eps, norm=attack.norm, steps=1, **options)


class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """Linear from 0 to `peak_rate` at `peak` of the steps, then linear back to 0."""

    def __init__(self, peak_rate: float, total_steps: int, peak: float = 0.4):
        self.peak_rate, self.total_steps, self.peak = peak_rate, total_steps, peak

    def __call__(self, step):
        progress = tf.cast(step, tf.float32) / float(self.total_steps)
        up = progress / self.peak
        down = (1.0 - progress) / (1.0 - self.peak)
        return self.peak_rate * tf.clip_by_value(tf.minimum(up, down), 0.0, 1.0)

    def get_config(self):
        return {"peak_rate": self.peak_rate, "total_steps": self.total_steps, "peak": self.peak}


def learning_rate(config: TrainConfig, steps_per_epoch: int):
    rate, schedule = config.optimizer.learning_rate, config.lr_schedule
    if schedule.kind == "step":
        boundaries = [m * steps_per_epoch for m in schedule.milestones]
        values = [rate * schedule.factor ** i for i in range(len(boundaries) + 1)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    if schedule.kind == "cyclic":
        return OneCycle(rate, config.schedule.total_epochs * steps_per_epoch, schedule.peak)
    return rate


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    options = config.optimizer
    rate = learning_rate(config, steps_per_epoch)
    decay = options.weight_decay or None
    if options.name == "sgd":
        return keras.optimizers.SGD(rate, momentum=options.momentum, nesterov=options.nesterov, weight_decay=decay)
    return keras.optimizers.Adam(rate, weight_decay=decay)


def current_learning_rate(optimizer: keras.optimizers.Optimizer) -> float:
    rate = optimizer.learning_rate
    return float(np.asarray(rate(optimizer.iterations) if callable(rate) else rate))


# ----------------------------------------------------------------------------- data

def _augment(images, seed, pad: int, flip: bool):
    """Each image of the batch shifted by up to `pad` pixels (zero padding) and, if asked, mirrored
    with probability 1/2: two gathers per batch (a mirror reverses the column indices), not one
    crop per image."""
    count, height, width = tf.shape(images)[0], images.shape[1], images.shape[2]
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    offsets = tf.random.stateless_uniform([count, 2], seed, 0, 2 * pad + 1, dtype=tf.int32)
    columns = offsets[:, 1:] + tf.range(width)
    if flip:
        mirrored = tf.random.stateless_uniform([count], seed + 1) < 0.5
        columns = tf.where(mirrored[:, None], tf.reverse(columns, [1]), columns)
    rows = tf.gather(padded, offsets[:, :1] + tf.range(height), axis=1, batch_dims=1)
    return tf.gather(rows, columns, axis=2, batch_dims=1)


def batches_per_epoch(count: int, batch_size: int, replicas: int = 1) -> int:
    """Batches in an epoch of `count` samples: a last batch too small to give every replica a sample
    is left out (it is a different handful every epoch)."""
    whole, rest = divmod(count, batch_size)
    return whole + (rest >= replicas)


def training_batches(split, batch_size: int, seed: int, augment: str = "none", first_epoch: int = 0,
                     replicas: tuple[int, int, int] = (1, 0, 1)) -> tf.data.Dataset:
    """An endless stream of batches of a split (in memory or a streamed folder) whose order (and
    augmentation) depends on (seed, epoch) alone, so a resumed run sees exactly the batches the
    uninterrupted run would have seen; each epoch has exactly `batches_per_epoch` steps.

    `replicas` = (replicas in sync, this pipeline's first replica, replicas it feeds): each step's batch
    is cut into one near-equal share per replica, and this pipeline reads only its replicas' shares
    (see `distributed_batches`); the default is one pipeline feeding one replica the whole batch."""
    count, (total, first, local) = len(split), replicas
    pad = 4 if split.x.shape[1] >= 32 else 2

    def shares(batch):
        size = tf.cast(tf.shape(batch)[0], tf.int64)
        return tf.data.Dataset.range(first, first + local).map(
            lambda r: batch[r * size // total:(r + 1) * size // total])

    def epoch_batches(epoch):
        order = tf.random.experimental.stateless_shuffle(tf.range(count, dtype=tf.int64),
                                                         seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
        index_batches = tf.data.Dataset.from_tensor_slices(order).batch(batch_size).take(
            batches_per_epoch(count, batch_size, total))
        if replicas != (1, 0, 1):
            index_batches = index_batches.flat_map(shares)
        batches = split.read(index_batches)
        if augment == "none":
            return batches
        return batches.enumerate().map(
            lambda b, batch: (_augment(batch[0], tf.stack([epoch * 1_000_003 + seed, b * total + first]), pad,
                                       augment == "crop_flip"), batch[1]),
            num_parallel_calls=tf.data.AUTOTUNE)

    return (tf.data.Dataset.range(first_epoch, UNTIL_STOPPED).flat_map(epoch_batches)
            .prefetch(tf.data.AUTOTUNE))


def distributed_batches(strategy: tf.distribute.Strategy, split, batch_size: int, seed: int, augment: str = "none",
                        first_epoch: int = 0):
    """`training_batches` for `fit` under `strategy`: with several replicas, each input pipeline (one per
    worker) reads only its replicas' shares of each batch, so no worker decodes another's images."""
    total = strategy.num_replicas_in_sync
    if total == 1:
        return training_batches(split, batch_size, seed, augment, first_epoch)

    def pipeline(context: tf.distribute.InputContext):
        local = total // context.num_input_pipelines
        return training_batches(split, batch_size, seed, augment, first_epoch,
                                (total, context.input_pipeline_id * local, local))
    return strategy.distribute_datasets_from_function(pipeline)


# ----------------------------------------------------------------------------- the trainer

class StepBatch(NamedTuple):
    """What one step trains on: plain examples under cross-entropy, and (clean image, adversarial
    example) pairs under the objective, each with per-sample loss weights."""
    plain_x: tf.Tensor
    plain_y: tf.Tensor
    plain_weights: tf.Tensor
    clean_x: tf.Tensor
    adversarial_x: tf.Tensor
    pair_y: tf.Tensor
    pair_weights: tf.Tensor


class LossTerms(NamedTuple):
    loss: tf.Tensor  # the weighted class loss plus the model's own losses (regularisers)
    class_loss: tf.Tensor
    kl: tf.Tensor  # mean KL(f(x) || f(x')) over the pairs (0 without pairs or a paired objective)
    labels: tf.Tensor  # the examples the accuracy counts: plain, then adversarial
    logits: tf.Tensor
    weight: tf.Tensor  # the sum of the per-sample weights


class AdversarialTrainer(keras.Model):
    """Trains `classifier` in place; its own weights are the classifier's."""

    def __init__(self, classifier: keras.Model, config: TrainConfig, steps_per_epoch: int,
                 gan: ConditionalGan | None = None, **kwargs):
        super().__init__(**kwargs)
        self.classifier = classifier
        self.mode = config.mode
        self.adversarial = config.adversarial
        self.attack_method = config.attack.method
        self.gan = gan
        if self.adversarial and config.attack.generative and gan is None:
            raise ValueError(f"the {self.attack_method} method needs the GAN of config.generator")
        pixels = self.adversarial and not config.attack.generative and self.attack_method not in RMSE_METHODS
        self.spec = pixel_attack(config.attack) if pixels else None
        self.rmse_steps = config.attack.steps or 7
        self.latent_settings = (LatentAttack(steps=config.attack.steps or 20, noise_bound=config.attack.eps)
                                if self.attack_method == "unrestricted" else None)
        self.eps, self.eps_min = config.attack.eps, config.attack.eps_min
        self.step_ratio = (self.spec.effective_step_size / self.spec.eps) if self.spec else 0.0
        self.fixed_step_size = config.attack.step_size
        self.warmup_steps = config.attack.warmup_epochs * steps_per_epoch
        self.mix_weight, self.mix_fraction = config.mix.weight, config.mix.fraction
        self.objective, self.beta = config.objective.kind, config.objective.beta
        self.paired = self.objective in PAIRED_OBJECTIVES  # the loss needs f(x) beside f(x')
        self.awp = config.awp if config.awp.enabled else None
        self.seed = config.seed
        self.adversarial_phase = tf.Variable(False, trainable=False, name="adversarial_phase")
        self.adversarial_steps = tf.Variable(0, trainable=False, dtype=tf.int64, name="adversarial_steps",
                                             aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.lipschitz = config.lipschitz if config.lipschitz.enabled else None
        self.noise = config.noise if config.noise.sigma > 0 else None
        self.consistent = self.noise is not None and bool(self.noise.consistency or self.noise.entropy)
        self.psi_integral = tf.Variable(0.0, trainable=False, name="psi_integral",  # r of the adaptive psi
                                        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.penalty_tracker = keras.metrics.Mean(name="lipschitz_penalty")
        self.kl_tracker = keras.metrics.Mean(name="kl")
        self.consistency_tracker = keras.metrics.Mean(name="consistency")

    @property
    def metrics(self):
        return ([self.loss_tracker, self.accuracy_tracker] + ([self.penalty_tracker] if self.lipschitz else [])
                + ([self.kl_tracker] if self.paired else []) + ([self.consistency_tracker] if self.consistent else []))

    def current_psi(self) -> float | None:
        """The Lipschitz penalty's weight now (None without the penalty), for the history."""
        return float(lipschitz.psi(self.psi_integral, self.lipschitz)) if self.lipschitz else None

    def call(self, x, training=False):
        return self.classifier(x, training=training)

    def _step_logs(self) -> dict:
        """Metric results; under several workers with a batch axis, because Keras 3 reduces step logs
        across workers along axis 0 (tensorflow/tensorflow#72388). Epoch logs read the metrics."""
        results = {metric.name: metric.result() for metric in self.metrics}
        if isinstance(self.distribute_strategy, tf.distribute.MultiWorkerMirroredStrategy):
            results = {name: tf.reshape(value, [1]) for name, value in results.items()}
        return results

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Keras 3 builds a model under a strategy by reducing a first batch across replicas, which
        fails under MultiWorkerMirroredStrategy (eager PerReplica values). The classifier is built
        from its Input and `train` builds the optimizer before `fit`: nothing is left to build."""
        if not (self.classifier.built and self.optimizer.built):
            super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def warmup(self):
        """The share of eps reached: ramps linearly over the warm-up's adversarial steps."""
        if self.warmup_steps <= 0:
            return tf.constant(1.0)
        return tf.minimum(1.0, tf.cast(self.adversarial_steps + 1, tf.float32) / self.warmup_steps)

    def current_eps(self) -> float:
        """The largest eps the attack uses now (for the history)."""
        return float(self.eps * self.warmup())

    def attack_eps(self, seed):
        """This batch's eps: drawn from [eps_min, eps] for ll_fgsm, ramped up during warm-up."""
        if self.attack_method == "ll_fgsm":
            eps = tf.random.stateless_uniform([], seed, self.eps_min, self.eps)
        else:
            eps = tf.constant(self.eps, tf.float32)
        return eps * self.warmup()

    def adversarial_examples(self, x, y):
        """The batch's extra training examples, labelled y: from a pixel attack on x, or from the GAN
        for y's classes (GAN samples, or unrestricted examples against the current weights)."""
        step = tf.cast(self.optimizer.iterations, tf.int64)
        seed = tf.stack([tf.constant(self.seed, tf.int64), step])
        if self.gan is not None and self.attack_method in GENERATIVE_METHODS:
            return self._generated_examples(tf.cast(y, tf.int32), seed)
        eps = self.attack_eps(seed)
        if self.attack_method == "rmse_ball":
            return rmse_descent.ball_examples(self.classifier, x, y, eps, self.rmse_steps)
        if self.attack_method == "l2_min":
            return rmse_descent.l2_min_examples(self.classifier, x, y, eps, self.rmse_steps)
        step_size = self.fixed_step_size if self.fixed_step_size is not None else eps * self.step_ratio
        if self.objective == "trades":
            return attacks.perturb_divergence(self.classifier, self.spec, x, eps, step_size, self.spec.steps, seed + 1)
        return attacks.perturb(self.classifier, self.spec, x, y, eps, step_size, self.spec.steps, seed + 1)

    def _generated_examples(self, labels, seed):
        z = tf.random.stateless_normal([tf.shape(labels)[0], self.gan.z_dim], seed + 2)
        if self.attack_method == "gan":
            return tf.stop_gradient(self.gan.generator([z, labels], training=False))
        untargeted = tf.fill(tf.shape(labels), UNTARGETED)
        return latent_search(self.gan.generator, self.gan.critic, self.classifier, z, labels, untargeted,
                             self.latent_settings, seed + 3)[1]

    def _clean_batch(self, x, y) -> StepBatch:
        ones = tf.ones_like(y, tf.float32)
        return StepBatch(x, y, ones, x[:0], x[:0], y[:0], ones[:0])

    def _adversarial_batch(self, x, y) -> StepBatch:
        """The mode's mix: all pairs (adversarial), the clean batch and all pairs (double), or the
        batch with its first `fraction` as pairs (split); pairs weigh lambda beside clean images."""
        ones = tf.ones_like(y, tf.float32)
        if self.mode == ADVERSARIAL:
            return StepBatch(x[:0], y[:0], ones[:0], x, self.adversarial_examples(x, y), y, ones)
        if self.mode == "double":
            return StepBatch(x, y, ones, x, self.adversarial_examples(x, y), y, self.mix_weight * ones)
        split = tf.cast(tf.round(self.mix_fraction * tf.cast(tf.shape(y)[0], tf.float32)), tf.int32)
        return StepBatch(x[split:], y[split:], ones[split:], x[:split], self.adversarial_examples(x[:split], y[:split]),
                         y[:split], self.mix_weight * ones[:split])

    def _step_batch(self, x, y) -> StepBatch:
        if not self.adversarial:
            return self._clean_batch(x, y)
        batch = tf.cond(self.adversarial_phase, lambda: self._adversarial_batch(x, y), lambda: self._clean_batch(x, y))
        # counted outside the cond: a replicated variable must not be updated inside control flow
        self.adversarial_steps.assign_add(tf.cast(self.adversarial_phase, tf.int64))
        return batch

    def _forward_inputs(self, batch: StepBatch):
        """The one forward pass's inputs and labels: plain, adversarial, then (paired objectives) clean."""
        parts = [(batch.plain_x, batch.plain_y), (batch.adversarial_x, batch.pair_y)]
        if self.paired:
            parts.append((batch.clean_x, batch.pair_y))
        return tf.concat([x for x, _ in parts], 0), tf.concat([y for _, y in parts], 0)

    def _loss_terms(self, batch: StepBatch, logits, model_losses) -> LossTerms:
        logits = tf.cast(logits, tf.float32)
        plain, pairs = tf.shape(batch.plain_y)[0], tf.shape(batch.pair_y)[0]
        seen = logits[:plain + pairs]
        adversarial, clean = logits[plain:plain + pairs], logits[plain + pairs:]
        per_sample = tf.concat([objectives.cross_entropy(seen[:plain], batch.plain_y),
                                objectives.pair_loss(self.objective, clean, adversarial, batch.pair_y, self.beta)], 0)
        weights = tf.concat([batch.plain_weights, batch.pair_weights], 0)
        class_loss = tf.reduce_sum(weights * per_sample) / tf.reduce_sum(weights)
        loss = class_loss + tf.add_n(model_losses) if model_losses else class_loss
        kl = tf.reduce_mean(attacks.kl_divergence(clean, adversarial)) if self.paired else 0.0
        return LossTerms(loss, class_loss, tf.where(pairs > 0, kl, 0.0),
                         tf.concat([batch.plain_y, batch.pair_y], 0), seen, tf.reduce_sum(weights))

    def _noisy_copies(self, inputs):
        """`copies` copies of the step's inputs, one after another, each with its own Gaussian noise."""
        tiled = tf.tile(inputs, [self.noise.copies, 1, 1, 1])
        seed = tf.random.experimental.stateless_fold_in(self._step_seed(), 1)
        return tiled + self.noise.sigma * tf.random.stateless_normal(tf.shape(tiled), seed, dtype=tiled.dtype)

    def _noisy_loss_terms(self, batch: StepBatch, logits, model_losses) -> tuple[LossTerms, tf.Tensor]:
        """The objective averaged over the noisy copies, plus their consistency terms (returned too)."""
        copies = tf.split(logits, self.noise.copies)
        terms = [self._loss_terms(batch, part, []) for part in copies]
        class_loss = tf.add_n([t.class_loss for t in terms]) / len(terms)
        consistency = tf.constant(0.0)
        if self.consistent:
            kl, entropy = objectives.consistency(copies)
            consistency = self.noise.consistency * tf.reduce_mean(kl) + self.noise.entropy * tf.reduce_mean(entropy)
        loss = class_loss + consistency + (tf.add_n(model_losses) if model_losses else 0.0)
        return LossTerms(loss, class_loss, tf.add_n([t.kl for t in terms]) / len(terms),
                         tf.concat([t.labels for t in terms], 0), tf.concat([t.logits for t in terms], 0),
                         terms[0].weight), consistency

    def train_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        batch = self._step_batch(x, y)
        inputs, labels = self._forward_inputs(batch)
        variables = self.classifier.trainable_variables
        penalty = consistency = None
        if self.awp:
            gradients, terms = self._perturbed_weights_gradient(batch, inputs)
        else:
            with tf.GradientTape() as tape:
                if self.lipschitz:
                    logits, penalty = lipschitz.penalised_forward(self.classifier, inputs, labels, self._step_seed(),
                                                                  self.lipschitz.zeta)
                    terms = self._loss_terms(batch, logits, self.classifier.losses)
                elif self.noise:
                    logits = self.classifier(self._noisy_copies(inputs), training=True)
                    terms, consistency = self._noisy_loss_terms(batch, logits, self.classifier.losses)
                else:
                    logits = self.classifier(inputs, training=True)
                    terms = self._loss_terms(batch, logits, self.classifier.losses)
                total = terms.loss + self._adapted_psi(terms.class_loss) * penalty if self.lipschitz else terms.loss
                scaled = self.optimizer.scale_loss(distribute.per_replica(total))
            gradients = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        self.loss_tracker.update_state(terms.loss, sample_weight=terms.weight)
        self.accuracy_tracker.update_state(terms.labels, terms.logits)
        if self.lipschitz:
            self.penalty_tracker.update_state(penalty)
        if self.paired:
            self.kl_tracker.update_state(terms.kl, sample_weight=tf.shape(batch.pair_y)[0])
        if self.consistent:
            self.consistency_tracker.update_state(consistency)
        return self._step_logs()

    def _stateless_loss(self, batch, inputs, weights, state):
        """The loss with the trainable weights replaced by `weights` (tensors), and the model's new
        non-trainable state; no variable changes."""
        logits, state, model_losses = self.classifier.stateless_call(weights, state, inputs, training=True,
                                                                     return_losses=True)
        return self._loss_terms(batch, logits, model_losses), state

    def _perturbed_weights_gradient(self, batch, inputs):
        """The loss's gradient at w + v, v the AWP offsets (zero in vanilla epochs), and its terms.
        The offsets follow the gradient summed over replicas, so every replica perturbs alike."""
        weights = [variable.value for variable in self.classifier.trainable_variables]
        state = [variable.value for variable in self.classifier.non_trainable_variables]
        context = tf.distribute.get_replica_context()

        def ascent(shifted):
            with tf.GradientTape() as tape:
                tape.watch(shifted)
                terms, _ = self._stateless_loss(batch, inputs, shifted, state)
                scaled = self.optimizer.scale_loss(distribute.per_replica(terms.loss))
            return [tf.zeros_like(w) if g is None else g for w, g in zip(shifted, tape.gradient(scaled, shifted))]

        def gradient_at(shifted):
            gradients = tf.cond(self.adversarial_phase, lambda: ascent(shifted),
                                lambda: [tf.zeros_like(w) for w in shifted])
            return context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)

        moved = awp.offsets(gradient_at, weights, self.awp.gamma, self.awp.steps)
        perturbed = [w + v for w, v in zip(weights, moved)]
        with tf.GradientTape() as tape:
            tape.watch(perturbed)
            terms, new_state = self._stateless_loss(batch, inputs, perturbed, state)
            scaled = self.optimizer.scale_loss(distribute.per_replica(terms.loss))
        gradients = tape.gradient(scaled, perturbed)
        for variable, value in zip(self.classifier.non_trainable_variables, new_state):
            variable.assign(value)
        return gradients, terms

    def _step_seed(self):
        """The penalty's draws: their own per step and per replica."""
        replica = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.int64)
        step = tf.cast(self.optimizer.iterations, tf.int64)
        return tf.stack([tf.constant(self.seed, tf.int64) + 7919 * (replica + 1), step])

    def _adapted_psi(self, class_loss):
        """Moves r by this step's class loss (averaged over replicas, as one global batch) and returns
        the psi it gives; the class loss is the one without the penalty, as in the seed."""
        context = tf.distribute.get_replica_context()
        global_loss = context.all_reduce(tf.distribute.ReduceOp.MEAN, tf.stop_gradient(class_loss))
        integral = lipschitz.next_integral(self.psi_integral, global_loss, self.lipschitz)
        self.psi_integral.assign(integral)
        return lipschitz.psi(integral, self.lipschitz)

    def test_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        logits = self.classifier(x, training=False)
        loss = tf.reduce_mean(objectives.cross_entropy(logits, y))
        self.loss_tracker.update_state(loss, sample_weight=tf.shape(y)[0])
        self.accuracy_tracker.update_state(y, logits)
        return self._step_logs()
