"""Training configuration: nested dataclasses read from JSON, validated before any work.

Every error names the field (`attack.eps: ...`), so a config typed by hand or sent by the app fails
at once with a message the user can act on. Unknown fields are refused rather than ignored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import math
import types
import typing
from pathlib import Path
from typing import Literal, Optional

from advcore.architectures import ARCHITECTURES, BACKBONES, densenet_depth_problem
from advcore.storage import files

VANILLA, ADVERSARIAL = "vanilla", "adversarial"
GENERATIVE_METHODS = ("gan", "unrestricted")  # training examples drawn from a class-conditional GAN
RMSE_METHODS = ("rmse_ball", "l2_min")  # seed 004's attacks: eps is an RMSE, the norm is L2
PIXEL_STEP_METHODS = ("fgsm", "fgsm_rs", "pgd", "ll_fgsm")  # their step size is a pixel step within the eps ball
UNTIL_STOPPED = 10**9  # the epoch count handed to `fit` when the user stops the run
WORST_OF_LOSSES = "ce+margin"  # an evaluation's loss: per sample, the worse of cross-entropy and margin


class ConfigError(ValueError):
    """An invalid configuration; the message starts with the field's dotted name."""


@dataclasses.dataclass
class DataConfig:
    """Validation images are held out of the training split (fixed by the seed) and never trained on;
    training reads no test file. `train_size` then subsets what is left."""
    # older configs named validation_size val_size and took those images from the test split
    RENAMED: typing.ClassVar[dict] = {"val_size": "validation_size"}

    dataset: str = "fashion_mnist"  # a built-in name or a folder of class sub-folders
    data_dir: Optional[str] = None
    train_size: Optional[int] = None  # a deterministic subset of the training split
    validation_size: Optional[int] = None  # held out of the training split; null: 5,000 (built-in) or 10% (folder)
    augment: Literal["none", "crop", "crop_flip"] = "none"
    image_size: Optional[int] = None  # folders: the side of the square input; null: the first image's size
    fit: Literal["crop", "pad", "stretch"] = "crop"  # folders: how an image of another shape becomes the input

    def check(self):
        from advcore.storage.data import DATASETS  # numpy only; keeps this module free of heavy imports

        if not self.dataset.strip():
            raise ConfigError("dataset: give a built-in set's name or the path of a folder with one sub-folder of "
                              "images per class")
        if self.dataset not in DATASETS and os.sep in self.dataset and not Path(self.dataset).expanduser().is_dir():
            raise ConfigError(f"dataset: no such folder {self.dataset}")
        if self.dataset not in DATASETS and not Path(self.dataset).expanduser().is_dir():
            raise ConfigError(f"dataset: unknown {self.dataset!r}; choose one of {', '.join(DATASETS)} or give "
                              "the path of a folder with one sub-folder of images per class")
        if self.dataset in DATASETS and self.image_size is not None:
            raise ConfigError(f"image_size: {self.dataset} images keep their own size; image_size is for folders")


@dataclasses.dataclass
class ModelConfig:
    architecture: str = "small_cnn"
    width: int = 1
    activation: Literal["relu", "half_huber"] = "relu"
    depth: Optional[int] = None  # densenet_bc: 6n+4 layers, default DENSENET_DEPTH
    growth: Optional[int] = None  # densenet_bc: channels each layer adds, default DENSENET_GROWTH
    path: Optional[str] = None  # start from a user's .keras model instead of a fresh one
    pretrained: bool = False  # a backbone (Keras application) starts from its ImageNet weights

    def check(self):
        if self.path is not None and not Path(self.path).expanduser().is_file():
            raise ConfigError(f"path: no model file at {self.path}")
        if self.path is None and self.architecture not in ARCHITECTURES:
            raise ConfigError(f"architecture: unknown {self.architecture!r}; choose one of "
                              f"{', '.join(ARCHITECTURES)} or give path")
        if self.activation != "relu" and (self.path is not None or self.architecture != "woods_resnet44"):
            raise ConfigError(f"activation: {self.activation} is built into woods_resnet44 only, not "
                              f"{self.path or self.architecture}")
        densenet = self.path is None and self.architecture == "densenet_bc"
        for name in ("depth", "growth"):
            if getattr(self, name) is not None and not densenet:
                raise ConfigError(f"{name}: only the densenet_bc architecture has a {name} setting")
        if densenet and self.width != 1:
            raise ConfigError("width: densenet_bc is widened by its growth rate, not width")
        backbone = self.path is None and self.architecture in BACKBONES
        if self.pretrained and not backbone:
            raise ConfigError(f"pretrained: ImageNet weights exist for the backbones ({', '.join(BACKBONES)}), not "
                              f"{self.path or self.architecture}")
        if backbone and self.width != 1:
            raise ConfigError(f"width: {self.architecture} is a Keras application of fixed width")
        if self.depth is not None and (problem := densenet_depth_problem(self.depth)):
            raise ConfigError(f"depth: {problem}")


@dataclasses.dataclass
class AttackConfig:
    """The attack that makes the adversarial examples of adversarial epochs."""
    method: Literal["fgsm", "fgsm_rs", "pgd", "ll_fgsm", "gan", "unrestricted", "rmse_ball", "l2_min"] = "pgd"
    norm: Literal["linf", "l2"] = "linf"  # rmse_ball and l2_min measure in RMSE (a scaled L2) whatever this says
    eps: float = 0.1  # unrestricted: the bound of the pixel noise added to the generated image
    eps_min: Optional[float] = None  # ll_fgsm: eps drawn per batch from [eps_min, eps]
    steps: Optional[int] = None  # pgd, rmse_ball, l2_min: default 7; unrestricted: latent search steps, default 20
    step_size: Optional[float] = None  # default: eps (fgsm), 1.25 eps (fgsm_rs), 2.5 eps / steps (pgd)
    warmup_epochs: float = 0.0  # eps ramps linearly from 0 over this many adversarial epochs

    def check(self):
        _finite("eps", self.eps, minimum=0.0)
        if self.eps < MIN_EPS:
            raise ConfigError(f"eps: must be at least {MIN_EPS:g} for adversarial training, got {self.eps:g}")
        if self.method not in RMSE_METHODS and self.eps > EPS_BOUNDS[self.norm]:
            unit = " (images are in [0, 1]: 8/255 is 0.031; an eps of 1 already covers every image)"
            raise ConfigError(f"eps: {self.eps:g} is over the {self.norm} limit of {EPS_BOUNDS[self.norm]:g}"
                              + (unit if self.norm == "linf" else ""))
        if self.method == "ll_fgsm":
            if self.eps_min is None:
                self.eps_min = 1e-4
            _finite("eps_min", self.eps_min, minimum=0.0)
            if self.eps_min > self.eps:
                raise ConfigError(f"eps_min: must not exceed eps ({self.eps}), got {self.eps_min}")
        elif self.eps_min is not None:
            raise ConfigError("eps_min: only the ll_fgsm method draws eps from a range")
        if self.method not in ("pgd", "unrestricted", *RMSE_METHODS) and self.steps not in (None, 1):
            raise ConfigError(f"steps: {self.method} takes one step; use method pgd for {self.steps}")
        if self.step_size is not None:
            if self.method in RMSE_METHODS:
                raise ConfigError(f"step_size: {self.method} sets its own steps (linearly decreasing, "
                                  "adding up to eps)")
            _finite("step_size", self.step_size, minimum=0.0)
            if self.method in PIXEL_STEP_METHODS and self.step_size > 2 * self.eps:
                raise ConfigError(f"step_size: {self.step_size:g} is more than twice eps ({self.eps:g}): one step "
                                  "would cross the whole ball (PGD's usual step is 2.5 eps / steps)")
        _finite("warmup_epochs", self.warmup_epochs, minimum=0.0)

    @property
    def generative(self) -> bool:
        """Whether the examples come from the GAN (`TrainConfig.generator`), not from a pixel attack."""
        return self.method in GENERATIVE_METHODS


OBJECTIVES = ("ce", "trades", "mart")
PAIRED_OBJECTIVES = ("trades", "mart")  # losses on a clean image and its adversarial example together


@dataclasses.dataclass
class ObjectiveConfig:
    """The loss of the adversarial examples. ce: cross-entropy on x' (Madry et al.); trades:
    CE(f(x), y) + beta KL(f(x) || f(x')), with x' maximising that KL (Zhang et al. 2019); mart:
    -log p_y(x') - log(1 - max_{k != y} p_k(x')) + beta KL(f(x) || f(x')) (1 - p_y(x)) (Wang et al. 2020)."""
    kind: Literal["ce", "trades", "mart"] = "ce"
    beta: float = 6.0  # trades, mart: weight of the KL term


@dataclasses.dataclass
class AwpConfig:
    """Adversarial weight perturbation (Wu et al. 2020): each adversarial step takes its gradient at
    weights moved toward higher adversarial loss, every kernel by gamma times its own norm (biases
    and normalisation parameters stay), reached in `steps` ascent steps; the update applies to the
    unperturbed weights."""
    enabled: bool = False
    gamma: float = 5e-3
    steps: int = 1

    def check(self):
        if self.enabled and self.gamma == 0:
            raise ConfigError("gamma: must be > 0 (or disable awp)")


@dataclasses.dataclass
class MixConfig:
    weight: float = 1.0  # lambda: weight of the adversarial loss against the clean loss
    fraction: float = 0.5  # split mode: share of each batch replaced by adversarial examples

    def check(self):
        if not 0 < self.fraction <= 1:
            raise ConfigError(f"fraction: must lie in (0, 1], got {self.fraction}")


@dataclasses.dataclass
class NoiseConfig:
    """Training for randomized smoothing: every input of a step (clean and adversarial) becomes
    `copies` copies with Gaussian noise of standard deviation `sigma` added, in pixel units (Cohen et
    al. 2019: certify at the sigma trained with). `consistency` adds lambda times the mean
    KL(p_mean || p_copy) of the copies' softmaxes from their mean, and `entropy` eta times the mean's
    entropy (Jeong & Shin 2020: 2 copies, lambda 5-20, eta 0.5)."""
    sigma: float = 0.0  # 0: no noise
    copies: int = 1
    consistency: float = 0.0
    entropy: float = 0.0

    def check(self):
        if self.sigma == 0 and (self.copies > 1 or self.consistency or self.entropy):
            raise ConfigError("sigma: noisy copies and their consistency need noise: set sigma > 0")
        if (self.consistency or self.entropy) and self.copies < 2:
            raise ConfigError("copies: the consistency term compares noisy copies of each image: set copies >= 2")


@dataclasses.dataclass
class LipschitzConfig:
    """Seed 004's Lipschitz penalty: psi * mean(|ds/dx|^2) added to the loss, by double backprop,
    where s is per sample a random logit or (with probability `zeta`) the margin logit_true -
    max_other. psi = psi_0 * exp(psi_rate * r) adapts: after every step r grows by
    clamp(-ln(loss / loss_target), -max_decrease, max_increase), floored at 0, so psi rises while
    the class loss is under its target and eases off slowly when it is over."""
    enabled: bool = False
    zeta: float = 0.2
    psi_0: float = 220.0
    psi_rate: float = 0.02
    loss_target: float = 1.5
    max_increase: float = 1.0
    max_decrease: float = 0.01

    def check(self):
        if not 0 <= self.zeta <= 1:
            raise ConfigError(f"zeta: must lie in [0, 1], got {self.zeta}")
        for name in ("psi_rate", "max_increase", "max_decrease"):
            _finite(name, getattr(self, name), minimum=0.0)
        _finite("loss_target", self.loss_target, minimum=0.0)
        if self.loss_target == 0:
            raise ConfigError("loss_target: must be > 0")


@dataclasses.dataclass
class ScheduleConfig:
    """Which epochs are vanilla and which adversarial.

    constant: every epoch in the training mode; interleaved: cycles of `vanilla_epochs` then
    `adversarial_epochs`; warmup: `vanilla_epochs` first, adversarial after. `epochs` (constant,
    warmup) or `cycles` (interleaved) set to null trains until stopped.
    """
    kind: Literal["constant", "interleaved", "warmup"] = "constant"
    epochs: Optional[int] = 10
    vanilla_epochs: int = 10
    adversarial_epochs: int = 3
    cycles: Optional[int] = None

    def check(self):
        if self.kind == "interleaved":
            if self.vanilla_epochs < 0 or self.adversarial_epochs < 1:
                raise ConfigError("adversarial_epochs: an interleaved cycle needs >= 1 adversarial epoch "
                                  "and >= 0 vanilla epochs")
        if self.kind == "warmup" and self.vanilla_epochs < 0:
            raise ConfigError(f"vanilla_epochs: must be >= 0, got {self.vanilla_epochs}")
        if self.kind == "warmup" and self.epochs is not None and self.epochs <= self.vanilla_epochs:
            raise ConfigError(f"epochs: warm-up of {self.vanilla_epochs} vanilla epochs leaves no "
                              f"adversarial epoch in {self.epochs}")

    @property
    def total_epochs(self) -> Optional[int]:
        if self.kind == "interleaved":
            return None if self.cycles is None else self.cycles * (self.vanilla_epochs + self.adversarial_epochs)
        return self.epochs


@dataclasses.dataclass
class OptimizerConfig:
    name: Literal["adam", "sgd"] = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9  # sgd only
    nesterov: bool = True  # sgd only; seed 004 used plain momentum
    weight_decay: float = 0.0  # decoupled: w -= learning_rate * weight_decay * w each step

    def check(self):
        if self.learning_rate == 0:
            raise ConfigError("learning_rate: must be > 0")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum: must lie in [0, 1), got {self.momentum}")


@dataclasses.dataclass
class LRScheduleConfig:
    """constant; step: multiply by `factor` at each epoch in `milestones`; cyclic: one cycle,
    linear from 0 up to the learning rate at `peak` of training and back down to 0."""
    kind: Literal["constant", "step", "cyclic"] = "constant"
    milestones: list[int] = dataclasses.field(default_factory=list)
    factor: float = 0.1
    peak: float = 0.4

    def check(self):
        if any(m < 1 for m in self.milestones) or sorted(self.milestones) != self.milestones:
            raise ConfigError(f"milestones: must be increasing epochs >= 1, got {self.milestones}")
        if self.kind == "step" and not self.milestones:
            raise ConfigError("milestones: the step schedule needs at least one epoch")
        _finite("factor", self.factor, minimum=0.0)
        if not 0 < self.peak < 1:
            raise ConfigError(f"peak: must lie in (0, 1), got {self.peak}")


@dataclasses.dataclass
class ValidationConfig:
    """Per-epoch robust accuracy on a fixed subset, and the catastrophic-overfitting guard."""
    robust_size: int = 500  # 0 disables the robust check
    eps: Optional[float] = None  # default: the training eps
    steps: int = 10
    collapse_ratio: float = 0.5  # warn when robust accuracy falls below this share of its best
    stop_on_collapse: bool = False
    gan_size: int = 0  # per-epoch accuracy on this many fresh GAN samples and unrestricted examples
    gan_steps: int = 100  # latent search steps of those unrestricted examples
    keep_best: bool = False  # the run's model.keras is its epoch of highest robust accuracy (Rice et al. 2020)

    def check(self):
        if self.eps is not None:
            _finite("eps", self.eps, minimum=0.0)
        if not 0 < self.collapse_ratio < 1:
            raise ConfigError(f"collapse_ratio: must lie in (0, 1), got {self.collapse_ratio}")


@dataclasses.dataclass
class DistributeConfig:
    strategy: Literal["auto", "default", "mirrored", "multi_worker"] = "auto"
    mixed_precision: bool = False
    # GPUs the run trains on: 0 (the CPU), N, or "all"; None: one when the machine has a GPU, else the CPU.
    # The scheduler gives them to the run alone (advcore.jobs.gpus); the inventory is checked at submit.
    gpus: int | Literal["all"] | None = None
    # Processes training the run together, each with `gpus` of its own: more than one needs a Ray
    # cluster, whose Ray Train gives each its TF_CONFIG for MultiWorkerMirroredStrategy.
    workers: int = 1

    def check(self):
        """The fields are checked by their types and bounds; the GPUs against the machine at submit."""


class _Config:
    """JSON in and out, for the top-level configs: read, checked field by field, written back."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, content: dict, checked: bool = True):
        """The config, its fields typed; `checked` also runs every check (a recorded run is read with
        types only, so that a dataset or model file that moved since does not make it unreadable)."""
        config = _build(cls, content, "")
        found = _problems(config, "") if checked else []
        if found:
            raise ConfigError(found[0])
        return config

    @classmethod
    def from_file(cls, path: str | Path):
        return cls.from_dict(read_file(path))


@dataclasses.dataclass
class TrainConfig(_Config):
    name: str = "run"
    mode: Literal["vanilla", "adversarial", "double", "split"] = "adversarial"
    batch_size: int = 128
    seed: int = 0
    keep_checkpoints: int = 5
    generator: Optional[str] = None  # a GAN run's folder: GAN and unrestricted examples, the GAN checks
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    attack: AttackConfig = dataclasses.field(default_factory=AttackConfig)
    objective: ObjectiveConfig = dataclasses.field(default_factory=ObjectiveConfig)
    awp: AwpConfig = dataclasses.field(default_factory=AwpConfig)
    mix: MixConfig = dataclasses.field(default_factory=MixConfig)
    lipschitz: LipschitzConfig = dataclasses.field(default_factory=LipschitzConfig)
    noise: NoiseConfig = dataclasses.field(default_factory=NoiseConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    lr_schedule: LRScheduleConfig = dataclasses.field(default_factory=LRScheduleConfig)
    validation: ValidationConfig = dataclasses.field(default_factory=ValidationConfig)
    distribute: DistributeConfig = dataclasses.field(default_factory=DistributeConfig)

    CHECKS: typing.ClassVar[tuple] = ("_check_lengths", "_check_generator", "_check_mode", "_check_objective",
                                      "_check_validation")  # independent: the form shows every failing one

    def check(self):
        for name in self.CHECKS:
            getattr(self, name)()

    def _check_lengths(self):
        total = self.schedule.total_epochs
        if self.lr_schedule.kind == "cyclic" and total is None:
            raise ConfigError("lr_schedule.kind: a cyclic schedule needs a known number of epochs "
                              "(schedule.epochs or schedule.cycles), not 'until stopped'")
        late = [m for m in self.lr_schedule.milestones if total is not None and m > total]
        if self.lr_schedule.kind == "step" and late:
            raise ConfigError(f"lr_schedule.milestones: epoch {late[0]} is after the run's last epoch ({total}), so "
                              "the rate would never drop there")

    def _check_generator(self):
        uses_gan = self.adversarial and self.attack.generative
        if (uses_gan or self.validation.gan_size) and self.generator is None:
            user = f"the {self.attack.method} method" if uses_gan else "validation.gan_size"
            raise ConfigError(f"generator: {user} needs a trained GAN: give the folder of a GAN run")
        if self.generator is not None and not (Path(self.generator).expanduser() / GENERATOR_FILE).is_file():
            raise ConfigError(f"generator: no {GENERATOR_FILE} in {self.generator} (give a GAN run's folder)")

    def _check_mode(self):
        if self.mode == "vanilla" and self.schedule.kind != "constant":
            raise ConfigError(f"schedule.kind: a {self.schedule.kind} schedule needs an adversarial mode, "
                              "not mode 'vanilla'")

    def _check_validation(self):
        if self.validation.keep_best and (self.validation.robust_size == 0 or self.data.validation_size == 0):
            raise ConfigError("validation.keep_best: picks the epoch of highest validation robust accuracy, so it "
                              "needs validation images (data.validation_size > 0) and validation.robust_size > 0")

    def _check_objective(self):
        kind = self.objective.kind
        if kind != "ce" and not self.adversarial:
            raise ConfigError(f"objective.kind: {kind} is a loss on adversarial examples; it needs an adversarial "
                              "mode, not mode 'vanilla'")
        if kind in PAIRED_OBJECTIVES and self.attack.generative:
            raise ConfigError(f"objective.kind: {kind} compares each image with its adversarial example; the "
                              f"{self.attack.method} method draws new images instead")
        if kind == "trades" and self.attack.method != "pgd":
            raise ConfigError(f"attack.method: trades runs its own PGD (on the KL term) from the attack's norm, eps, "
                              f"steps and step size; set method pgd, not {self.attack.method}")
        if self.awp.enabled and not self.adversarial:
            raise ConfigError("awp.enabled: adversarial weight perturbation needs an adversarial mode")
        if self.awp.enabled and self.lipschitz.enabled:
            raise ConfigError("awp.enabled: not combined with the Lipschitz penalty (its double backpropagation "
                              "runs at the unperturbed weights)")
        if self.noise.sigma and (self.awp.enabled or self.lipschitz.enabled):
            raise ConfigError("noise.sigma: noise training is not combined with "
                              f"{'AWP' if self.awp.enabled else 'the Lipschitz penalty'} yet")

    @property
    def adversarial(self) -> bool:
        return self.mode != "vanilla"


GENERATOR_FILE, CRITIC_FILE = "generator.keras", "critic.keras"  # in a GAN run's folder


@dataclasses.dataclass
class GanConfig(_Config):
    """An AC-GAN trained as WGAN-GP (seed 001): `critic_steps` critic updates per generator update,
    each critic update on its own real batch, so an epoch is one pass of the critic over the data."""
    kind: Literal["gan"] = "gan"
    name: str = "gan"
    data: DataConfig = dataclasses.field(default_factory=lambda: DataConfig(validation_size=0))
    architecture: Literal["auto", "dcgan", "resnet"] = "auto"  # auto: dcgan for 28x28, resnet for larger
    width: int = 1
    z_dim: int = 128
    epochs: Optional[int] = 20  # null trains until stopped
    batch_size: int = 64
    critic_steps: int = 5
    gradient_penalty: float = 10.0
    aux_weight_critic: float = 1.0
    aux_weight_generator: float = 0.1
    learning_rate: float = 2e-4
    beta_1: float = 0.0
    beta_2: float = 0.9
    seed: int = 0
    keep_checkpoints: int = 3
    distribute: DistributeConfig = dataclasses.field(default_factory=DistributeConfig)

    def check(self):
        for name in ("aux_weight_critic", "aux_weight_generator"):
            _finite(name, getattr(self, name), minimum=0.0)
        if self.learning_rate == 0:
            raise ConfigError("learning_rate: must be > 0")
        for name in ("beta_1", "beta_2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name}: must lie in [0, 1), got {getattr(self, name)}")


def upgraded(content: dict) -> tuple[dict, list[str]]:
    """A config file's content with its older field names replaced (so flags may set the new ones),
    and what each replaced field now means, to tell the user."""
    data = content.get("data")
    if not isinstance(data, dict) or "val_size" not in data or "validation_size" in data:
        return content, []
    note = (f"data.val_size ({data['val_size']}) is read as data.validation_size: older configs took their "
            "validation images from the test split; they are now held out of the training split, and training "
            "reads no test image")
    return content | {"data": _build_renamed(DataConfig, data)}, [note]


def _build_renamed(cls, content: dict) -> dict:
    """`content` with the older names of `cls.RENAMED` replaced by the current ones."""
    renamed = getattr(cls, "RENAMED", {})
    return {renamed.get(key, key): value for key, value in content.items()}


def config_kind(content: dict) -> str:
    """What a run's config.json trains: "gan" or "classifier"."""
    return "gan" if content.get("kind") == "gan" else "classifier"


def read_file(path: str | Path) -> dict:
    """A config file's JSON object, not yet validated (flags may still override its fields)."""
    try:
        return files.read_json(path, "config file")
    except files.FileProblem as error:
        raise ConfigError(str(error)) from None


# ----------------------------------------------------------------------------- generic checking

def _finite(name: str, value: float, minimum: float) -> None:
    if not math.isfinite(value) or value < minimum:
        raise ConfigError(f"{name}: must be a finite number >= {minimum:g}, got {value}")


SEED_MAX = 2**32 - 1
BOUNDS = {  # "Section.field": (lowest, highest): sizes that end, numbers that train; the CLI's help shows them
    "TrainConfig.batch_size": (1, 8192), "TrainConfig.seed": (0, SEED_MAX), "TrainConfig.keep_checkpoints": (1, 1000),
    "GanConfig.batch_size": (1, 8192), "GanConfig.seed": (0, SEED_MAX), "GanConfig.keep_checkpoints": (1, 1000),
    "GanConfig.width": (1, 16), "GanConfig.z_dim": (1, 4096), "GanConfig.critic_steps": (1, 100),
    "GanConfig.epochs": (1, 100_000), "GanConfig.learning_rate": (0, 1), "GanConfig.gradient_penalty": (0, 1000),
    "DataConfig.train_size": (1, 10**9), "DataConfig.validation_size": (0, 10**7),
    "DataConfig.image_size": (8, 1024),
    "ModelConfig.width": (1, 16), "ModelConfig.depth": (10, 400), "ModelConfig.growth": (1, 256),
    "AttackConfig.steps": (1, 1000), "AttackConfig.step_size": (0, 1000), "AttackConfig.warmup_epochs": (0, 10_000),
    "ObjectiveConfig.beta": (0, 100), "AwpConfig.gamma": (0, 1), "AwpConfig.steps": (1, 20),
    "MixConfig.weight": (0, 100), "LipschitzConfig.psi_0": (0, 1e6),
    "NoiseConfig.sigma": (0, 4), "NoiseConfig.copies": (1, 16), "NoiseConfig.consistency": (0, 100),
    "NoiseConfig.entropy": (0, 100),
    "ScheduleConfig.epochs": (1, 100_000), "ScheduleConfig.cycles": (1, 100_000),
    "ScheduleConfig.vanilla_epochs": (0, 10_000), "ScheduleConfig.adversarial_epochs": (1, 10_000),
    "OptimizerConfig.learning_rate": (0, 10), "OptimizerConfig.weight_decay": (0, 1),
    "ValidationConfig.robust_size": (0, 100_000), "ValidationConfig.steps": (1, 1000),
    "ValidationConfig.gan_size": (0, 100_000), "ValidationConfig.gan_steps": (1, 10_000),
    "DistributeConfig.gpus": (0, 64), "DistributeConfig.workers": (1, 64),
}
MIN_EPS = 1e-6  # a smaller budget is no attack: a float32 pixel near 1 moves in steps of 6e-8, an 8-bit one of 4e-3
EPS_BOUNDS = {"linf": 1.0, "l2": 1000.0}  # Linf in [0, 1] pixel units covers every image at 1


def bounds_of(dotted: str, config_class=None) -> tuple | None:
    """The documented (lowest, highest) of a dotted config field, e.g. "attack.steps", or None."""
    cls = config_class or TrainConfig
    *sections, leaf = dotted.split(".")
    for section in sections:
        cls = typing.get_type_hints(cls)[section]
    return BOUNDS.get(f"{cls.__name__}.{leaf}")


def _bound_problems(config) -> list[str]:
    found = []
    for field in dataclasses.fields(config):
        value, bounds = getattr(config, field.name), BOUNDS.get(f"{type(config).__name__}.{field.name}")
        if bounds and isinstance(value, (int, float)) and not bounds[0] <= value <= bounds[1]:
            found.append(f"{field.name}: must lie in [{_shown(bounds[0])}, {_shown(bounds[1])}], got {_shown(value)}")
    return found


def _shown(number) -> str:
    return str(number) if isinstance(number, int) else f"{number:g}"


def _problems(config, prefix: str) -> list[str]:
    """Every section's bounds and checks, each message prefixed with its section's dotted name."""
    found = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            found += _problems(value, f"{prefix}{field.name}.")
    found += [prefix + problem for problem in _bound_problems(config)]
    for name in getattr(config, "CHECKS", ("check",) if hasattr(config, "check") else ()):
        try:  # relations between fields (bounds alone are in BOUNDS)
            getattr(config, name)()
        except ConfigError as error:
            found.append(f"{prefix}{error}")
    return found


def problems(cls, content: dict) -> list[str]:
    """Every problem of a config's content at once, for a form to mark each next to its field
    (`from_dict` raises the first). A field of the wrong type is reported alone: nothing else can be checked."""
    try:
        return _problems(_build(cls, content, ""), "")
    except ConfigError as error:
        return [str(error)]


def _build(cls, content, prefix: str):
    if not isinstance(content, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: must be an object, got {type(content).__name__}")
    for old, new in getattr(cls, "RENAMED", {}).items():
        if old in content and new in content:
            raise ConfigError(f"{prefix}{old}: give {new} alone ({old} is its older name)")
    content = _build_renamed(cls, content)
    hints = typing.get_type_hints(cls)
    names = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(content) - names)
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown field (known: {', '.join(sorted(names))})")
    values = {name: _convert(hints[name], value, f"{prefix}{name}") for name, value in content.items()}
    return cls(**values)


def _convert(kind, value, name: str):
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if dataclasses.is_dataclass(kind):
        return _build(kind, value, f"{name}.")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        kinds = [a for a in args if a is not type(None)]
        if len(kinds) == 1:
            return _convert(kinds[0], value, name)
        for kind in kinds:  # the first that takes the value: int | Literal["all"]
            with contextlib.suppress(ConfigError):
                return _convert(kind, value, name)
        accepted = " or ".join("an integer" if k is int else f"one of {', '.join(map(repr, typing.get_args(k)))}"
                               for k in kinds)
        raise ConfigError(f"{name}: must be {accepted}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{name}: must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{name}: must be a list, got {value!r}")
        return [_convert(args[0], item, f"{name}[{i}]") for i, item in enumerate(value)]
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: must be true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: must be an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}: must be a number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: must be a string, got {value!r}")
        return value
    raise TypeError(f"{name}: unsupported config type {kind}")


def phase(config: TrainConfig, epoch: int) -> str:
    """The phase of a 0-based epoch under the config's schedule."""
    schedule = config.schedule
    if not config.adversarial:
        return VANILLA
    if schedule.kind == "interleaved":
        cycle = schedule.vanilla_epochs + schedule.adversarial_epochs
        return VANILLA if epoch % cycle < schedule.vanilla_epochs else ADVERSARIAL
    if schedule.kind == "warmup":
        return VANILLA if epoch < schedule.vanilla_epochs else ADVERSARIAL
    return ADVERSARIAL
