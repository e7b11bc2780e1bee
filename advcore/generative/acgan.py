"""A class-conditional GAN (AC-GAN trained as WGAN-GP, seed 001): models, losses, the Keras trainer.

The generator maps (z, class) to an image in [0, 1]; the critic returns a Wasserstein score and
class logits (its auxiliary classifier). The critic has no batch normalisation, because the gradient
penalty is taken per interpolated sample. Everything random in a training step is drawn from
(seed, step) alone, so a resumed run draws exactly what the uninterrupted run would have.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from advcore import models
from advcore.storage import data, files, images
from advcore.training import distribute
from advcore.training.config import CRITIC_FILE, GENERATOR_FILE, UNTIL_STOPPED, GanConfig

# ----------------------------------------------------------------------------- models

def _conditioned_latent(z_dim: int, num_classes: int):
    """The inputs (z, class) and z scaled elementwise by a learned class embedding."""
    z = keras.Input((z_dim,), name="z")
    label = keras.Input((), dtype="int32", name="label")
    embedding = keras.layers.Embedding(num_classes, z_dim, name="class_embedding")(label)
    return z, label, keras.layers.Multiply()([z, embedding])


def _image_output(x, channels: int):
    return keras.layers.Conv2D(channels, 3, padding="same", activation="sigmoid", dtype="float32",
                               name="image")(x)


def dcgan_generator(image_shape, num_classes: int, z_dim: int = 128, width: int = 1) -> keras.Model:
    """Dense to a quarter-size map, then two stride-2 transposed convs (28x28 from 7x7)."""
    height, _, channels = image_shape
    if height % 4:
        raise ValueError(f"the DCGAN generator needs a size divisible by 4, got {height}")
    z, label, h = _conditioned_latent(z_dim, num_classes)
    base = height // 4
    x = keras.layers.Dense(base * base * 128 * width, use_bias=False)(h)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    x = keras.layers.Reshape((base, base, 128 * width))(x)
    for filters in (64 * width, 32 * width):
        x = keras.layers.Conv2DTranspose(filters, 4, strides=2, padding="same", use_bias=False)(x)
        x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    return keras.Model([z, label], _image_output(x, channels), name="dcgan_generator")


def _critic_heads(features, inputs, num_classes: int, name: str) -> keras.Model:
    score = keras.layers.Dense(1, dtype="float32", name="score")(features)
    logits = keras.layers.Dense(num_classes, dtype="float32", name="aux_logits")(features)
    return keras.Model(inputs, [score, logits], name=name)


def dcgan_critic(image_shape, num_classes: int, width: int = 1) -> keras.Model:
    """Two stride-2 convs with leaky ReLU, then the score and auxiliary-class heads."""
    inputs = keras.Input(image_shape)
    x = inputs
    for filters in (64 * width, 128 * width):
        x = keras.layers.Conv2D(filters, 4, strides=2, padding="same")(x)
        x = keras.layers.LeakyReLU(0.2)(x)
    return _critic_heads(keras.layers.Flatten()(x), inputs, num_classes, "dcgan_critic")


def _up_block(x, filters: int):
    """BN-ReLU-upsample-conv-BN-ReLU-conv, with an upsampled 1x1 shortcut."""
    shortcut = keras.layers.Conv2D(filters, 1)(keras.layers.UpSampling2D()(x))
    y = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    y = keras.layers.Conv2D(filters, 3, padding="same")(keras.layers.UpSampling2D()(y))
    y = keras.layers.ReLU()(keras.layers.BatchNormalization()(y))
    y = keras.layers.Conv2D(filters, 3, padding="same")(y)
    return keras.layers.Add()([shortcut, y])


def _down_block(x, filters: int, downsample: bool):
    """ReLU-conv-ReLU-conv (then average pooling), with a 1x1 shortcut; no normalisation."""
    shortcut = keras.layers.Conv2D(filters, 1)(x)
    y = keras.layers.Conv2D(filters, 3, padding="same")(keras.layers.ReLU()(x))
    y = keras.layers.Conv2D(filters, 3, padding="same")(keras.layers.ReLU()(y))
    if downsample:
        shortcut, y = keras.layers.AveragePooling2D(2)(shortcut), keras.layers.AveragePooling2D(2)(y)
    return keras.layers.Add()([shortcut, y])


def resnet_generator(image_shape, num_classes: int, z_dim: int = 128, width: int = 1) -> keras.Model:
    """The WGAN-GP CIFAR generator: 4x4 map, three residual up-blocks (32x32 from 4x4)."""
    height, _, channels = image_shape
    if height % 8:
        raise ValueError(f"the ResNet generator needs a size divisible by 8, got {height}")
    filters = 64 * width
    z, label, h = _conditioned_latent(z_dim, num_classes)
    base = height // 8
    x = keras.layers.Reshape((base, base, filters))(keras.layers.Dense(base * base * filters)(h))
    for _ in range(3):
        x = _up_block(x, filters)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    return keras.Model([z, label], _image_output(x, channels), name="resnet_generator")


def resnet_critic(image_shape, num_classes: int, width: int = 1) -> keras.Model:
    """Two residual down-blocks and two plain ones, ReLU, global average, the two heads."""
    filters = 64 * width
    inputs = keras.Input(image_shape)
    x = inputs
    for downsample in (True, True, False, False):
        x = _down_block(x, filters, downsample)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(x))
    return _critic_heads(x, inputs, num_classes, "resnet_critic")


def resolve_architecture(architecture: str, image_shape) -> str:
    if architecture != "auto":
        return architecture
    return "dcgan" if image_shape[0] <= 28 else "resnet"


def build(config: GanConfig, image_shape, num_classes: int) -> tuple[keras.Model, keras.Model]:
    """The generator and critic the config describes."""
    if resolve_architecture(config.architecture, image_shape) == "dcgan":
        return (dcgan_generator(image_shape, num_classes, config.z_dim, config.width),
                dcgan_critic(image_shape, num_classes, config.width))
    return (resnet_generator(image_shape, num_classes, config.z_dim, config.width),
            resnet_critic(image_shape, num_classes, config.width))


# ----------------------------------------------------------------------------- losses

def gradient_penalty(critic: keras.Model, real, fake, seed) -> tf.Tensor:
    """mean((||grad_x critic(x_hat)||_2 - 1)^2) at x_hat on the segments from each real to its fake
    image, at a uniform random point: the WGAN-GP penalty that keeps the critic 1-Lipschitz."""
    share = tf.random.stateless_uniform([tf.shape(real)[0], 1, 1, 1], seed)
    interpolates = real + share * (fake - real)
    with tf.GradientTape() as tape:
        tape.watch(interpolates)
        score, _ = critic(interpolates, training=True)
    gradient = tape.gradient(score, interpolates)
    norms = tf.sqrt(tf.reduce_sum(tf.square(gradient), axis=[1, 2, 3]) + 1e-12)
    return tf.reduce_mean(tf.square(norms - 1.0))


def _cross_entropy(labels, logits):
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))


# ----------------------------------------------------------------------------- the trainer

class ACGANTrainer(keras.Model):
    """One `train_step` = `critic_steps` critic updates (one real batch each) + one generator update.

    Critic loss: D(fake) - D(real) + gp * GP + w_D * (CE(aux(real), y) + CE(aux(fake), c)).
    Generator loss: -D(fake) + w_G * CE(aux(fake), c), fakes drawn for uniformly random classes c.
    """

    def __init__(self, generator: keras.Model, critic: keras.Model, config: GanConfig, num_classes: int,
                 **kwargs):
        super().__init__(**kwargs)
        self.generator, self.critic, self.config, self.num_classes = generator, critic, config, num_classes
        self.z_dim = config.z_dim
        self.trackers = {name: keras.metrics.Mean(name=name) for name in (
            "critic_loss", "generator_loss", "wasserstein", "gradient_penalty", "aux_loss_real",
            "aux_loss_fake")}
        self.trackers["aux_accuracy_real"] = keras.metrics.SparseCategoricalAccuracy(name="aux_accuracy_real")
        self.trackers["aux_accuracy_fake"] = keras.metrics.SparseCategoricalAccuracy(name="aux_accuracy_fake")

    def compile(self, **kwargs):
        super().compile(**kwargs)
        config = self.config
        self.critic_optimizer = keras.optimizers.Adam(config.learning_rate, config.beta_1, config.beta_2,
                                                      name="critic_adam")
        self.generator_optimizer = keras.optimizers.Adam(config.learning_rate, config.beta_1, config.beta_2,
                                                         name="generator_adam")
        self.critic_optimizer.build(self.critic.trainable_variables)
        self.generator_optimizer.build(self.generator.trainable_variables)

    @property
    def metrics(self):
        return list(self.trackers.values())

    @property
    def optimizers(self) -> list[keras.optimizers.Optimizer]:
        return [self.critic_optimizer, self.generator_optimizer]

    def call(self, images, training=False):
        """The critic's (score, class logits): what Keras calls the trainer on, with a real batch."""
        return self.critic(images, training=training)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Both networks are built from their Inputs; nothing is left for Keras to build (its build by
        a first batch fails under MultiWorkerMirroredStrategy, as for the classifier's trainer)."""

    def _fakes(self, count, seed):
        z = tf.random.stateless_normal([count, self.z_dim], seed)
        labels = tf.random.stateless_uniform([count], seed + 1, 0, self.num_classes, dtype=tf.int32)
        return self.generator([z, labels], training=True), labels

    def _critic_update(self, real, labels, seed) -> None:
        config = self.config
        fake, fake_labels = self._fakes(tf.shape(real)[0], seed)
        with tf.GradientTape() as tape:
            score_real, aux_real = self.critic(real, training=True)
            score_fake, aux_fake = self.critic(fake, training=True)
            wasserstein = tf.reduce_mean(score_real) - tf.reduce_mean(score_fake)
            penalty = gradient_penalty(self.critic, real, fake, seed + 2)
            aux_loss_real = _cross_entropy(labels, aux_real)
            aux_loss_fake = _cross_entropy(fake_labels, aux_fake)
            loss = -wasserstein + config.gradient_penalty * penalty + config.aux_weight_critic * (
                aux_loss_real + aux_loss_fake)
            share = distribute.per_replica(loss)
        variables = self.critic.trainable_variables
        gradients = tape.gradient(share, variables)
        self.critic_optimizer.apply_gradients(zip(gradients, variables))
        for name, value in (("critic_loss", loss), ("wasserstein", wasserstein), ("gradient_penalty", penalty),
                            ("aux_loss_real", aux_loss_real), ("aux_loss_fake", aux_loss_fake)):
            self.trackers[name].update_state(value)
        self.trackers["aux_accuracy_real"].update_state(labels, aux_real)

    def _generator_update(self, count, seed) -> None:
        with tf.GradientTape() as tape:
            fake, labels = self._fakes(count, seed)
            score, aux = self.critic(fake, training=True)
            loss = -tf.reduce_mean(score) + self.config.aux_weight_generator * _cross_entropy(labels, aux)
            share = distribute.per_replica(loss)
        variables = self.generator.trainable_variables
        gradients = tape.gradient(share, variables)
        self.generator_optimizer.apply_gradients(zip(gradients, variables))
        self.trackers["generator_loss"].update_state(loss)
        self.trackers["aux_accuracy_fake"].update_state(labels, aux)

    def train_step(self, data):
        x, y = data
        steps = self.config.critic_steps
        chunk = tf.shape(x)[0] // steps  # this replica's share of one real batch
        step = tf.cast(self.generator_optimizer.iterations, tf.int64)
        replica = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.int64)

        def seed(update):  # each update of each step on each replica draws its own numbers
            return tf.stack([tf.constant(self.config.seed, tf.int64) + 7919 * replica,
                             step * (steps + 1) * 4 + update * 4])

        for i in range(steps):  # unrolled: critic_steps is small and fixed
            self._critic_update(x[i * chunk:(i + 1) * chunk], y[i * chunk:(i + 1) * chunk], seed(i))
        self._generator_update(chunk, seed(steps))
        return {name: tracker.result() for name, tracker in self.trackers.items()}


def real_batches(split, config: GanConfig, first_epoch: int = 0) -> tf.data.Dataset:
    """Endless batches of critic_steps x batch_size real images of a split (in memory or a streamed
    folder), reshuffled per (seed, epoch); every batch is full, as the critic steps slice it."""
    size = config.batch_size * config.critic_steps

    def epoch_batches(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(len(split), dtype=tf.int64), seed=tf.stack([tf.constant(config.seed, tf.int64), epoch]))
        index_batches = tf.data.Dataset.from_tensor_slices(order).batch(size, drop_remainder=True)
        return split.read(index_batches).map(lambda images, labels: (images, tf.cast(labels, tf.int32)))

    return tf.data.Dataset.range(first_epoch, UNTIL_STOPPED).flat_map(epoch_batches).prefetch(tf.data.AUTOTUNE)


def steps_per_epoch(count: int, config: GanConfig, replicas: int = 1) -> int:
    if config.batch_size % replicas:
        raise ValueError(f"batch_size {config.batch_size} must divide evenly among the {replicas} replicas")
    steps = count // (config.batch_size * config.critic_steps)
    if steps < 1:
        raise ValueError(f"{count} training images are fewer than one step's "
                         f"{config.critic_steps} x {config.batch_size}: lower batch_size or critic_steps")
    return steps


# ----------------------------------------------------------------------------- a trained GAN

@dataclasses.dataclass
class ConditionalGan:
    """A trained generator and its critic (whose auxiliary classifier names an image's class)."""
    generator: keras.Model
    critic: keras.Model
    class_names: tuple[str, ...]

    @property
    def z_dim(self) -> int:
        return int(self.generator.inputs[0].shape[-1])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.generator.outputs[0].shape[1:])

    def latents(self, count: int, seed: int) -> np.ndarray:
        return np.random.default_rng(seed).standard_normal((count, self.z_dim)).astype(np.float32)

    def generate(self, z, labels, batch_size: int = 500) -> np.ndarray:
        """G(z, label) for each row, in batches, as float32 images in [0, 1]."""
        z, labels = np.asarray(z, np.float32), np.asarray(labels, np.int32)
        parts = [np.asarray(self.generator([z[i:i + batch_size], labels[i:i + batch_size]], training=False))
                 for i in range(0, len(z), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, *self.image_shape), np.float32)

    def aux_logits(self, pictures, batch_size: int = 500) -> np.ndarray:
        """The critic's class logits: what the GAN thinks each picture shows."""
        pictures = np.asarray(pictures, np.float32)
        return np.concatenate([np.asarray(self.critic(pictures[i:i + batch_size], training=False)[1])
                               for i in range(0, len(pictures), batch_size)])


def sample_grid(gan: ConditionalGan, z: np.ndarray, rows: int | None = None) -> np.ndarray:
    """One row per class (the first `rows`), the same latents across each column: an image grid."""
    classes = min(rows or gan.num_classes, gan.num_classes)
    labels = np.repeat(np.arange(classes), len(z))
    pictures = gan.generate(np.tile(z, (classes, 1)), labels)
    return images.grid(pictures, columns=len(z))


def save(gan_folder: Path, generator: keras.Model, critic: keras.Model) -> None:
    models.save(critic, gan_folder / CRITIC_FILE)
    models.save(generator, gan_folder / GENERATOR_FILE)


class GanError(ValueError):
    """A folder that holds no usable GAN, with the reason."""


def load(folder: str | Path) -> ConditionalGan:
    """A GAN run's folder (or a bundled generator's): generator.keras, critic.keras and config.json,
    loaded with safe_mode (no code in the files runs)."""
    folder = Path(folder).expanduser()
    try:
        config = GanConfig.from_dict(files.read_json(folder / "config.json", "GAN config"))
    except (files.FileProblem, ValueError) as error:
        raise GanError(f"{folder}: not a GAN run ({error})") from None
    loaded = []
    for name in (GENERATOR_FILE, CRITIC_FILE):
        path = folder / name
        if not path.is_file():
            raise GanError(f"{folder}: no {name} yet (a GAN run saves it after its first epoch)")
        try:
            loaded.append(keras.saving.load_model(path, compile=False, safe_mode=True))
        except Exception as error:  # Keras raises ValueError, TypeError, zip errors, ...
            raise GanError(f"{path}: cannot load it ({type(error).__name__}: {error})") from error
    generator, critic = loaded
    classes = critic.outputs[1].shape[-1]
    names = data.CLASS_NAMES.get(config.data.dataset, tuple(str(i) for i in range(classes)))
    return ConditionalGan(generator, critic, tuple(names))
