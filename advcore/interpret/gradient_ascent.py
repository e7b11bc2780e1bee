"""Images a classifier draws itself: maximal class activations and class traversals.

Both are gradient ascent on one pre-softmax logit per image (softmax would let an image win by
pushing the other classes down instead of showing its own class). Maximal class activation starts
from noise, a blurred mean image or a given image and follows the gradient divided by its RMS
(seed 000), with optional jitter, blur, L2 and total-variation penalties that keep the picture
smooth; class traversal starts from a real image and takes sign steps toward a target class
(seed 003), optionally inside an L2 or Linf budget. A robust model's ascent paints its class; a
standard model's adds noise that the model alone finds convincing.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from advcore import attacks, graphs
from advcore.attacks.norms import NORMS

DIRECTIONS = ("rms", "sign")
STARTS = ("noise", "mean", "image")
_RMS_FLOOR = 1e-5  # seed 000's guard against a zero gradient


@dataclasses.dataclass(frozen=True)
class Ascent:
    """How to climb a logit; every field is checked on construction."""

    steps: int = 500
    step_size: float = 0.05
    direction: str = "rms"  # "rms": gradient / its RMS per image; "sign": its sign
    jitter_every: int = 0  # roll the images by one random pixel every N steps (0: never)
    blur_every: int = 0  # 3x3 Gaussian blur every N steps (0: never)
    l2: float = 0.0  # weight of the mean squared pixel value (pulls toward black)
    tv: float = 0.0  # weight of the mean absolute difference between neighbouring pixels
    norm: str | None = None  # keep the image inside this ball around its start ("l2" or "linf")
    eps: float = 0.0
    record_every: int = 10  # keep a frame every N steps, and the start

    def __post_init__(self):
        problems = []
        if not (isinstance(self.steps, int) and 1 <= self.steps <= 100_000):
            problems.append(f"steps must be an integer in 1..100000, got {self.steps!r}")
        if not self.step_size > 0:
            problems.append(f"step_size must be positive, got {self.step_size!r}")
        if self.direction not in DIRECTIONS:
            problems.append(f"direction must be one of {', '.join(DIRECTIONS)}, got {self.direction!r}")
        for name in ("jitter_every", "blur_every"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 0):
                problems.append(f"{name} must be a whole number >= 0, got {getattr(self, name)!r}")
        for name in ("l2", "tv"):
            if not getattr(self, name) >= 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.norm is not None and self.norm not in NORMS:
            problems.append(f"norm must be l2, linf or None, got {self.norm!r}")
        if self.norm is not None and not self.eps > 0:
            problems.append(f"a {self.norm} budget needs eps > 0, got {self.eps!r}")
        if not (isinstance(self.record_every, int) and 1 <= self.record_every):
            problems.append(f"record_every must be a positive integer, got {self.record_every!r}")
        if problems:
            raise ValueError("; ".join(problems))

    def replace(self, **changes) -> "Ascent":
        return dataclasses.replace(self, **changes)

    @property
    def frame_steps(self) -> list[int]:
        """The step number of each recorded frame: 0, every `record_every` steps, and the last step."""
        return [*range(0, self.steps, self.record_every), self.steps]


# Maximal class activation, name -> (ascent, start): AdvLab's default, tuned on the bundled Fashion-MNIST
# models for the clearest garments from the robust one (small steps, blur, L2 toward the black background,
# total variation, from the blurred mean image), and seed 000's default and "better" settings.
ACTIVATION_PRESETS = {
    "advlab": (Ascent(steps=500, step_size=0.01, blur_every=10, l2=2.0, tv=4.0, record_every=10), "mean"),
    "seed": (Ascent(steps=1000, step_size=0.01, record_every=20), "noise"),
    "seed-better": (Ascent(steps=500, step_size=0.1, jitter_every=10, blur_every=50, record_every=10), "noise"),
}
# Class traversal: seed 003's 400 sign steps of 0.01, every step a frame.
TRAVERSAL = Ascent(steps=400, step_size=0.01, direction="sign", record_every=1)


@dataclasses.dataclass(frozen=True)
class Ascension:
    frames: np.ndarray  # float32 [frames, images, H, W, C] in [0, 1]
    logits: np.ndarray  # float32 [frames, images, classes]
    steps: list[int]  # the step number of each frame
    targets: np.ndarray  # the class each image climbs

    @property
    def images(self) -> np.ndarray:
        return self.frames[-1]

    @property
    def target_logits(self) -> np.ndarray:
        """[frames, images]: each image's target logit along the way."""
        return np.take_along_axis(self.logits, self.targets[None, :, None], axis=2)[..., 0]


def blur(x: tf.Tensor) -> tf.Tensor:
    """3x3 Gaussian ([1, 2, 1] / 4 both ways) per channel, edges reflected so borders keep their level."""
    kernel = tf.constant([1.0, 2.0, 1.0]) / 4.0
    kernel = tf.tensordot(kernel, kernel, axes=0)[:, :, None, None]
    kernel = tf.tile(kernel, [1, 1, x.shape[-1], 1])
    padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="REFLECT")
    return tf.nn.depthwise_conv2d(padded, kernel, [1, 1, 1, 1], "VALID")


def total_variation(x: tf.Tensor) -> tf.Tensor:
    """Per image: mean absolute difference between vertical and between horizontal neighbours."""
    down = tf.reduce_mean(tf.abs(x[:, 1:] - x[:, :-1]), axis=[1, 2, 3])
    across = tf.reduce_mean(tf.abs(x[:, :, 1:] - x[:, :, :-1]), axis=[1, 2, 3])
    return down + across


def _objective(model, x, targets, settings: Ascent):
    logits = tf.cast(model(x, training=False), tf.float32)
    value = tf.gather(logits, targets, batch_dims=1)
    if settings.l2:
        value -= settings.l2 * tf.reduce_mean(tf.square(x), axis=[1, 2, 3])
    if settings.tv:
        value -= settings.tv * total_variation(x)
    return value, logits


def _climb(model, settings: Ascent, x, origin, targets, first_step, frames, last_step, seed):
    """`frames` intervals of `record_every` steps from x, none past `last_step`; each interval's frame and logits."""
    frame_images = tf.TensorArray(tf.float32, size=frames)
    frame_logits = tf.TensorArray(tf.float32, size=frames)
    norm = NORMS[settings.norm] if settings.norm else None

    def step(i, x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            value, _ = _objective(model, x, targets, settings)
        grad = tape.gradient(value, x)
        if settings.direction == "sign":
            direction = tf.sign(grad)
        else:
            direction = grad / (tf.sqrt(tf.reduce_mean(tf.square(grad), axis=[1, 2, 3], keepdims=True)) + _RMS_FLOOR)
        x = x + settings.step_size * direction
        number = first_step + i + 1
        if settings.jitter_every:
            shift = tf.random.stateless_uniform([2], tf.stack([seed, tf.cast(number, tf.int64)]), -1, 2, tf.int32)
            jittered = tf.roll(x, shift, axis=[1, 2])
            x = tf.where(number % settings.jitter_every == 0, jittered, x)
        if settings.blur_every:
            x = tf.where(number % settings.blur_every == 0, blur(x), x)
        if norm is not None:
            x = origin + norm.project(x - origin, settings.eps)
        return tf.clip_by_value(x, 0.0, 1.0)

    for frame in tf.range(frames):
        x = tf.while_loop(lambda i, _: (i < settings.record_every)
                          & (first_step + frame * settings.record_every + i < last_step),
                          lambda i, x: (i + 1, step(frame * settings.record_every + i, x)),
                          (tf.constant(0), x))[1]
        frame_images = frame_images.write(frame, x)
        frame_logits = frame_logits.write(frame, _objective(model, x, targets, settings)[1])
    return x, frame_images.stack(), frame_logits.stack()


def _compiled(model: keras.Model, settings: Ascent):
    image = tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32)
    count = tf.TensorSpec([], tf.int32)
    signature = [image, image, tf.TensorSpec([None], tf.int32), count, count, count, tf.TensorSpec([], tf.int64)]
    key = ("ascent", settings.replace(steps=1))  # the step count is an argument, not part of the graph
    return graphs.compiled(model, key, lambda *args: _climb(model, settings, *args), signature)


def ascend(model: keras.Model, start, targets, settings: Ascent, *, seed: int = 0,
           on_frames: Callable[[int, np.ndarray], None] | None = None, chunks: int = 10) -> Ascension:
    """Climbs each start image's target logit; `on_frames(step, latest images)` reports progress.

    The ascent runs compiled in at most `chunks` calls (one host round trip each), so a page can show
    progress and the newest frame without slowing the loop down.
    """
    start, targets = attacks.checked_batch(model, start, np.reshape(targets, -1), "target classes")
    targets = targets.astype(np.int32)
    run = _compiled(model, settings)
    x, origin = tf.constant(start), tf.constant(start)
    frames, logits = [start], [model(origin, training=False).numpy().astype(np.float32)]
    intervals = -(-settings.steps // settings.record_every)
    per_call = max(1, -(-intervals // chunks))
    done = 0
    while done < intervals:
        count = min(per_call, intervals - done)
        x, new_frames, new_logits = run(x, origin, targets, done * settings.record_every, count, settings.steps, seed)
        frames.extend(new_frames.numpy())
        logits.extend(new_logits.numpy())
        done += count
        if on_frames is not None:
            on_frames(min(done * settings.record_every, settings.steps), frames[-1])
    return Ascension(np.stack(frames), np.stack(logits), settings.frame_steps, targets)


def starting_images(kind: str, shape, count: int, *, seed: int = 0, images=None) -> np.ndarray:
    """`count` start images: uniform noise, the blurred mean of `images`, or `images` themselves."""
    shape = tuple(shape)
    if kind == "noise":
        return np.random.default_rng(seed).uniform(0, 1, (count, *shape)).astype(np.float32)
    if images is None or len(images) == 0:
        raise ValueError(f"a {kind!r} start needs images")
    images = np.asarray(images, dtype=np.float32)
    if kind == "mean":
        mean = images.mean(axis=0, keepdims=True)
        for _ in range(3):
            mean = blur(tf.constant(mean)).numpy()
        return np.repeat(mean, count, axis=0)
    if kind == "image":
        if len(images) not in (1, count):
            raise ValueError(f"give one start image or {count}, got {len(images)}")
        return np.broadcast_to(images, (count, *shape)).copy()
    raise ValueError(f"start must be one of {', '.join(STARTS)}, got {kind!r}")


def maximal_activations(model: keras.Model, classes, settings: Ascent, *, start: str = "noise", images=None,
                        seed: int = 0, on_frames=None) -> Ascension:
    """One image per class in `classes`, each maximising its class logit, all optimised at once.

    `images` feed a "mean" start (their blurred mean) or an "image" start (one image, or one per class).
    """
    classes = np.asarray(classes, dtype=np.int32).reshape(-1)
    begin = starting_images(start, model.inputs[0].shape[1:], len(classes), seed=seed, images=images)
    return ascend(model, begin, classes, settings, seed=seed, on_frames=on_frames)


def traverse(model: keras.Model, image, target: int, settings: Ascent = TRAVERSAL, *, on_frames=None) -> Ascension:
    """From one image toward class `target`: every frame of the climb of its logit."""
    return ascend(model, np.asarray(image, dtype=np.float32)[None], [target], settings, on_frames=on_frames)
