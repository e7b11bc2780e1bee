"""`python -m advcore train`: every config field as a flag, a config file, resume."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from advcore import devices
from advcore.cli.parsing import UsageError, int_in, integer, number, positive_int
from advcore.jobs import gpus


def _epochs(text: str) -> int | None:
    if text.strip().lower() in ("until-stopped", "none", "null", "inf"):
        return None
    return positive_int(text)


def _int_list(text: str) -> list[int]:
    return [integer(part) for part in text.split(",") if part.strip()]


# flag, config field, type, help (defaults come from the config file, else from advcore.training.config)
TRAIN_OPTIONS = (
    ("--name", "name", str, "a name for the run (part of its id)"),
    ("--dataset", "data.dataset", str, "fashion_mnist, mnist, cifar10, cifar100, or a folder of class sub-folders"),
    ("--data-dir", "data.data_dir", str, "folder with the dataset files"),
    ("--train-size", "data.train_size", positive_int, "train on a deterministic subset of this many images"),
    ("--validation-size", "data.validation_size", integer, "validation images held out of the training split, never "
     "trained on (default 5000 for built-in sets, 10%% of a folder's; 0: none)"),
    ("--augment", "data.augment", str, "none (default), crop (random shifts), or crop_flip (also mirrors)"),
    ("--image-size", "data.image_size", positive_int, "a folder's images become squares of this side, e.g. 224 "
     "(default: the first image's size)"),
    ("--fit", "data.fit", str, "a folder's images of another shape: crop (default: scale the shorter side, cut the "
     "centre), pad (scale the longer side, pad with black) or stretch"),
    ("--architecture", "model.architecture", str, "small_cnn (default), madry_cnn, preact_resnet20, preact_resnet44, woods_resnet44 "
     "(seed 004's CIFAR ResNet), densenet_bc (seed 001's), or a Keras application: resnet50, efficientnet_b0, "
     "convnext_tiny, mobilenet_v2 (inputs of 32 px or more; see --pretrained)"),
    ("--width", "model.width", positive_int, "width multiplier of the architecture (default 1)"),
    ("--activation", "model.activation", str, "relu (default) or half_huber (seed 004's smooth ReLU; woods_resnet44)"),
    ("--depth", "model.depth", positive_int, "densenet_bc: layers, 6n+4 (default 100)"),
    ("--growth", "model.growth", positive_int, "densenet_bc: growth rate k (default 12)"),
    ("--init-model", "model.path", str, "start from this .keras model instead of a fresh one"),
    ("--mode", "mode", str, "per-step training in adversarial epochs: adversarial (default), double "
                            "(clean + adversarial batch), split (a share of the batch adversarial), or vanilla"),
    ("--objective", "objective.kind", str, "loss of the adversarial examples: ce (default, Madry et al.), trades "
     "(CE on x + beta KL(f(x) || f(x')), x' maximising the KL) or mart (boosted CE on x' + beta KL weighted by "
     "1 - p_y(x))"),
    ("--beta", "objective.beta", number, "trades, mart: weight of the KL term (default 6)"),
    ("--awp-gamma", "awp.gamma", number, "with --awp: each kernel moves by gamma times its norm (default 5e-3)"),
    ("--awp-steps", "awp.steps", positive_int, "with --awp: ascent steps of the weight perturbation (default 1)"),
    ("--mix-weight", "mix.weight", number, "lambda, the weight of adversarial against clean loss (default 1)"),
    ("--mix-fraction", "mix.fraction", number, "split mode: share of each batch made adversarial (default 0.5)"),
    ("--attack", "attack.method", str, "fgsm, fgsm_rs (random start, step 1.25 eps: fast training), pgd "
                                       "(default), ll_fgsm (least-likely class, eps drawn per batch), gan "
                                       "(GAN samples of the batch's classes), unrestricted (latent-space attack), "
                                       "rmse_ball (seed 004: eps in RMSE, e.g. 0.01), l2_min (seed 004: the smallest "
                                       "misclassifying perturbation within RMSE eps, e.g. 0.1)"),
    ("--generator", "generator", str, "a GAN run's folder: for --attack gan/unrestricted and the GAN checks"),
    ("--norm", "attack.norm", str, "linf (default) or l2"),
    ("--eps", "attack.eps", number, "training perturbation budget, e.g. 0.1 or 8/255 (default 0.1; at most 1 in "
     "linf, 1000 in l2)"),
    ("--eps-min", "attack.eps_min", number, "ll_fgsm: lower end of the per-batch eps range (default 1e-4)"),
    ("--attack-steps", "attack.steps", positive_int, "pgd, rmse_ball, l2_min steps (default 7), unrestricted latent "
     "steps (default 20)"),
    ("--step-size", "attack.step_size", number, "attack step size (default by method)"),
    ("--eps-warmup", "attack.warmup_epochs", number, "ramp eps up from 0 over this many adversarial epochs"),
    ("--lipschitz-zeta", "lipschitz.zeta", number, "Lipschitz penalty: share of samples whose margin (not a random "
     "logit) is smoothed (default 0.2)"),
    ("--psi-0", "lipschitz.psi_0", number, "Lipschitz penalty: psi at r = 0 (default 220)"),
    ("--psi-rate", "lipschitz.psi_rate", number, "Lipschitz penalty: psi = psi_0 exp(rate r) (default 0.02)"),
    ("--psi-loss-target", "lipschitz.loss_target", number, "Lipschitz penalty: class loss psi steers toward "
                                                           "(default 1.5)"),
    ("--noise-sigma", "noise.sigma", number, "randomized smoothing: train on inputs with Gaussian noise of this "
     "standard deviation, in pixel units, e.g. 0.25 (default 0: none)"),
    ("--noise-copies", "noise.copies", positive_int, "with --noise-sigma: noisy copies of each input per step "
     "(default 1)"),
    ("--consistency", "noise.consistency", number, "with --noise-copies >= 2: lambda, the weight of the copies' "
     "KL to their mean (Jeong & Shin 2020: 5-20; default 0)"),
    ("--consistency-entropy", "noise.entropy", number, "with --consistency: eta, the weight of the mean's entropy "
     "(default 0; the paper: 0.5)"),
    ("--schedule", "schedule.kind", str, "constant (default), interleaved, or warmup"),
    ("--epochs", "schedule.epochs", _epochs, "epochs, or until-stopped (default 10)"),
    ("--vanilla-epochs", "schedule.vanilla_epochs", integer, "vanilla epochs per cycle (interleaved) or first (warmup)"),
    ("--adversarial-epochs", "schedule.adversarial_epochs", positive_int, "adversarial epochs per interleaved cycle"),
    ("--cycles", "schedule.cycles", _epochs, "interleaved cycles, or until-stopped (the default)"),
    ("--optimizer", "optimizer.name", str, "adam (default) or sgd"),
    ("--lr", "optimizer.learning_rate", number, "learning rate (peak rate for cyclic; default 1e-3)"),
    ("--momentum", "optimizer.momentum", number, "sgd momentum (default 0.9)"),
    ("--weight-decay", "optimizer.weight_decay", number, "decoupled weight decay (default 0)"),
    ("--lr-schedule", "lr_schedule.kind", str, "constant (default), step, or cyclic (one cycle)"),
    ("--lr-milestones", "lr_schedule.milestones", _int_list, "step schedule: epochs to multiply the rate at"),
    ("--lr-factor", "lr_schedule.factor", number, "step schedule: the multiplier (default 0.1)"),
    ("--batch-size", "batch_size", positive_int, "batch size (default 128)"),
    ("--seed", "seed", integer, "seed of weights, data order and attacks (default 0)"),
    ("--robust-val-size", "validation.robust_size", integer, "images of the per-epoch PGD check (default 500, 0: off)"),
    ("--robust-eps", "validation.eps", number, "eps of the per-epoch PGD check (default: the training eps)"),
    ("--robust-steps", "validation.steps", positive_int, "steps of the per-epoch PGD check (default 10)"),
    ("--collapse-ratio", "validation.collapse_ratio", number, "warn when robust accuracy falls below this "
     "share of its best (default 0.5)"),
    ("--gan-check-size", "validation.gan_size", integer, "per epoch: accuracy on this many GAN samples and "
     "unrestricted examples (default 0: off)"),
    ("--gan-check-steps", "validation.gan_steps", positive_int, "latent steps of those examples (default 100)"),
    ("--keep-checkpoints", "keep_checkpoints", positive_int, "per-epoch checkpoints to keep (default 5)"),
    ("--strategy", "distribute.strategy", str, "auto (default), default, mirrored, or multi_worker (TF_CONFIG)"),
    ("--workers", "distribute.workers", positive_int, "processes training the run together on a Ray cluster's "
     "nodes (Ray Train, MultiWorkerMirroredStrategy), each with --gpus of its own (default 1)"),
)


GAN_OPTIONS = (
    ("--name", "name", str, "a name for the run (part of its id)"),
    ("--dataset", "data.dataset", str, "fashion_mnist, mnist, cifar10, cifar100, or a folder of class sub-folders"),
    ("--data-dir", "data.data_dir", str, "folder with the dataset files"),
    ("--train-size", "data.train_size", positive_int, "train on a deterministic subset of this many images"),
    ("--architecture", "architecture", str, "auto (default: dcgan for 28x28, resnet for 32x32), dcgan or resnet"),
    ("--width", "width", positive_int, "channel multiplier of generator and critic (default 1)"),
    ("--z-dim", "z_dim", positive_int, "size of the latent vector z (default 128)"),
    ("--epochs", "epochs", _epochs, "passes of the critic over the data, or until-stopped (default 20)"),
    ("--batch-size", "batch_size", positive_int, "images per critic or generator update (default 64)"),
    ("--critic-steps", "critic_steps", positive_int, "critic updates per generator update (default 5)"),
    ("--gradient-penalty", "gradient_penalty", number, "weight of the WGAN-GP gradient penalty (default 10)"),
    ("--aux-weight-critic", "aux_weight_critic", number, "weight of the critic's class loss (default 1)"),
    ("--aux-weight-generator", "aux_weight_generator", number, "weight of the generator's class loss (default 0.1)"),
    ("--lr", "learning_rate", number, "Adam learning rate of both networks (default 2e-4)"),
    ("--beta1", "beta_1", number, "Adam beta_1 (default 0)"),
    ("--beta2", "beta_2", number, "Adam beta_2 (default 0.9)"),
    ("--seed", "seed", integer, "seed of weights, data order and latents (default 0)"),
    ("--keep-checkpoints", "keep_checkpoints", positive_int, "per-epoch checkpoints to keep (default 3)"),
    ("--strategy", "distribute.strategy", str, "auto (default), default, mirrored, or multi_worker (TF_CONFIG)"),
)


def _add_run_options(parser: argparse.ArgumentParser, options, resume_help: str = "continue this run from its "
                     "last finished epoch", resume_name: str = "RUN") -> None:
    run = parser.add_argument_group("run")
    run.add_argument("--config", type=Path, help="a JSON config file; flags given as well override its fields")
    run.add_argument("--resume", metavar=resume_name, help=resume_help)
    run.add_argument("--runs-dir", type=Path, default=None, help="the runs root (default: $ADVLAB_RUNS_DIR or ./runs)")
    run.add_argument("--cpu-devices", type=positive_int, default=None,
                     help="split the CPU into this many logical devices (tests the multi-device path)")
    from advcore.training.config import GanConfig, TrainConfig, bounds_of

    config_class = GanConfig if options is GAN_OPTIONS else TrainConfig
    group = parser.add_argument_group("training (each sets one field of the config)")
    for flag, field, kind, text in options:
        limits = bounds_of(field, config_class)
        shown = f"; from {limits[0]:,} to {limits[1]:,}" if limits else ""
        group.add_argument(flag, dest=field, type=kind, default=argparse.SUPPRESS, help=text + shown)


def add_cluster_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--cluster", metavar="ADDRESS", default=None,
                        help=f"{what} on the Ray cluster whose head is at HOST:PORT (as `ray start --head` prints it), "
                             "or local (default: $ADVLAB_CLUSTER, else local)")


def add_shards_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shards", type=positive_int, default=None,
                        help="with --cluster: shards of test images, each a Ray task (default: one per GPU of the "
                             "cluster, else one per $ADVLAB_SHARD_CPUS of its CPUs)")


def _add_devices(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mixed-precision", dest="distribute.mixed_precision", action="store_true",
                        default=argparse.SUPPRESS, help="float16 compute on GPUs (weights stay float32)")
    parser.add_argument("--gpus", dest="distribute.gpus", type=gpu_count, default=argparse.SUPPRESS,
                        help="GPUs to train on, the run's alone: 0 (the CPU), N, or all (default: 1 when the "
                             "machine has a GPU); more than the machine has is refused before any run exists")


def gpu_count(text: str) -> int | str:
    return "all" if text == "all" else int_in(0, 64)(text)


ROBUST_ADDITIONS = {"model.activation": "half_huber", "lipschitz.enabled": True}  # and half batches, if adversarial


def add_options(parser: argparse.ArgumentParser) -> None:
    _add_run_options(parser, TRAIN_OPTIONS)
    parser.add_argument("--stop-on-collapse", dest="validation.stop_on_collapse", action="store_true",
                        default=argparse.SUPPRESS, help="stop when robust accuracy collapses")
    parser.add_argument("--awp", dest="awp.enabled", action="store_true", default=argparse.SUPPRESS,
                        help="adversarial weight perturbation (Wu et al. 2020): gradients at weights moved toward "
                             "higher adversarial loss")
    parser.add_argument("--pretrained", dest="model.pretrained", action="store_true", default=argparse.SUPPRESS,
                        help="a backbone (resnet50, efficientnet_b0, convnext_tiny, mobilenet_v2) starts from its "
                             "ImageNet weights, read from the Keras cache (~/.keras/models)")
    parser.add_argument("--keep-best", dest="validation.keep_best", action="store_true", default=argparse.SUPPRESS,
                        help="the run's model.keras is its epoch of highest validation robust accuracy")
    parser.add_argument("--no-nesterov", dest="optimizer.nesterov", action="store_false", default=argparse.SUPPRESS,
                        help="sgd: plain momentum instead of Nesterov's")
    parser.add_argument("--lipschitz", dest="lipschitz.enabled", action="store_true", default=argparse.SUPPRESS,
                        help="seed 004's Lipschitz penalty by double backprop, with the adaptive psi")
    parser.add_argument("--robust-additions", action="store_true", default=False,
                        help="seed 004's robust additions: --activation half_huber --lipschitz, and in an "
                             "adversarial mode --mode split --mix-fraction 0.5 (half of each batch perturbed)")
    _add_devices(parser)
    add_cluster_option(parser, "submit the run as a Ray job and return: it trains")


def add_gan_options(parser: argparse.ArgumentParser) -> None:
    _add_run_options(parser, GAN_OPTIONS)
    _add_devices(parser)
    add_cluster_option(parser, "submit the run as a Ray job and return: it trains")


STUDY_DEFAULTS = {"mix.weight": 0.3, "mix.fraction": 0.5, "validation.gan_size": 500}  # the seed's lambda, half batches


def add_study_options(parser: argparse.ArgumentParser) -> None:
    _add_run_options(parser, TRAIN_OPTIONS, "finish this study: its unfinished arms, in order", "STUDY")


def precheck(args, local: bool = True) -> None:
    """Validates a new run's options before TensorFlow loads, so that a bad value answers at once
    (ConfigError or UsageError), and on this machine its GPU request; the run itself validates them
    again."""
    if not args.resume:
        content = _config_content(args, _options(args), say=lambda line: None)
        _config_class(args).from_dict(content)
        if local:
            gpus.check_request(content, devices.inventory())


def _options(args):
    return GAN_OPTIONS if args.command == "train-gan" else TRAIN_OPTIONS


def _config_class(args):
    from advcore.training.config import GanConfig, TrainConfig

    return GanConfig if args.command == "train-gan" else TrainConfig


def stale_attempt(args) -> str:
    """In a cluster job's process: why its run is not the attempt the job was submitted for (stopped
    while the job waited for a node, or queued again as another job), else "". Such a job trains nothing."""
    from advcore.jobs.cluster import ATTEMPT_ENV
    from advcore.storage.runs import Run, RunError

    job = os.environ.get(ATTEMPT_ENV)
    if not job or not args.resume:
        return ""
    try:
        status = Run.open(args.resume, args.runs_dir).recorded_status()
    except RunError:
        return ""  # the resume itself says what is wrong with the run
    if status["status"] == "queued" and status.get("job") == job:
        return ""
    now_job = f" as job {status['job']}" if status.get("job") and status["job"] != job else ""
    return f"run {args.resume} is {status['status']}{now_job}, no longer this job's ({job}) to train"


def worker_group(args) -> tuple | None:
    """In a cluster job's process, for a run that asks for several workers: (the run, its workers, each
    one's GPUs as its submitter asked them of the cluster); else None."""
    from advcore.jobs.cluster import ATTEMPT_ENV
    from advcore.storage.runs import Run, RunError

    if not os.environ.get(ATTEMPT_ENV) or not args.resume or args.command != "train":
        return None
    try:
        run = Run.open(args.resume, args.runs_dir)
        content = run.config()
        workers, asked = gpus.workers(content), run.recorded_status().get("gpus_asked", 0)
    except (RunError, devices.DeviceError):
        return None  # the resume itself says what is wrong with the run
    return (run, workers, asked if isinstance(asked, int) and 0 <= asked <= devices.MAX_GPUS else 0) if workers > 1 else None


def submit_to_cluster(args, address: str) -> dict:
    """`train --cluster`: the run created (or, with --resume, queued again) and submitted as a Ray job;
    it trains there, its folder showing progress as usual. Raises ClusterError before any run exists
    when the cluster cannot take it."""
    from advcore.jobs import ray_executor, scheduler  # only here: the local path never imports Ray
    from advcore.storage.runs import Run

    precheck(args, local=False)
    if args.resume and (_given_fields(args, _options(args)) or args.config):
        raise UsageError("--resume with --cluster continues the run as it is: lengthen it with Extend in the app")
    ray_cluster = ray_executor.RayCluster.connect(address, args.runs_dir)
    try:
        if args.resume:
            run = Run.open(args.resume, args.runs_dir)
            scheduler.requeue(run)
        else:
            config = _config_class(args).from_dict(_config_content(args, _options(args)))
            run = Run.create(config.to_dict(), args.runs_dir, config.name)
        job = ray_cluster.submit(run)  # a run it cannot take fails, with the reason
    finally:
        ray_cluster.close()
    return {"run": run.id, "job": job, "cluster": address, "dashboard": ray_cluster.dashboard_url}


def take_gpus(args) -> None:
    """A run started from a terminal takes GPUs as the scheduler would: free ones, as many as its config
    asks for, before TensorFlow starts. A process given CUDA_VISIBLE_DEVICES (by the scheduler, or by
    hand) keeps those."""
    from advcore.storage.runs import Run, RunError

    if devices.VISIBLE in os.environ:
        return
    if args.resume:
        try:
            content = Run.open(args.resume, args.runs_dir).config()
        except RunError:
            return  # the resume itself says what is wrong with the run
    else:
        content = _config_content(args, _options(args), say=lambda line: None)
    inventory = devices.inventory()
    asked = gpus.check_request(content, inventory)
    with gpus.ledger(args.runs_dir):
        free = sorted(set(inventory) - gpus.in_use(args.runs_dir))
        if asked > len(free):
            raise UsageError(f"the run asks for {asked} GPUs and {len(free)} of the machine's "
                             f"{devices.describe_inventory(inventory)} are free: queue it from the app, or wait")
        os.environ.update(devices.child_env(free[:asked]))


def _config_content(args, options, say=print) -> dict:
    """The config file's content (if any, older field names replaced and explained) with every given
    flag written into its field."""
    from advcore.training.config import read_file, upgraded

    content, notes = upgraded(read_file(args.config)) if args.config else ({}, [])
    for note in notes:
        say(f"note: {note}")
    _set_fields(content, _given_fields(args, options))
    if getattr(args, "robust_additions", False):
        _set_fields(content, ROBUST_ADDITIONS)
        if content.get("mode", "adversarial") != "vanilla":
            _set_fields(content, {"mode": "split", "mix.fraction": 0.5})
    return content


LENGTH_FIELDS = ("schedule.epochs", "schedule.cycles", "epochs")  # what a resume may change: how long the run trains


def _given_fields(args, options) -> dict:
    """The config fields set by flags: {dotted field name: value}."""
    names = {field for _, field, _, _ in options}
    return {key: value for key, value in vars(args).items() if "." in key or key in names}


def _set_fields(content: dict, fields: dict) -> None:
    from advcore.training.config import ConfigError

    for key, value in fields.items():
        section = content
        *parents, leaf = key.split(".")
        for parent in parents:
            section = section.setdefault(parent, {})
            if not isinstance(section, dict):
                raise ConfigError(f"{parent}: must be an object")
        section[leaf] = value


def _run(args, options, config_class, train_function) -> dict:
    from advcore.storage.runs import Run
    from advcore.training import distribute
    from advcore.training.config import upgraded

    if args.cpu_devices:
        distribute.split_cpu(args.cpu_devices)
    # in a cluster only the chief writes the shared runs root; the others keep a private scratch run
    scratch = None if distribute.chief_by_tf_config() else Path(tempfile.mkdtemp(prefix="advcore-worker-"))
    if args.resume:
        flags = {field: flag for flag, field, _, _ in options}
        lengths = {field: value for field, value in _given_fields(args, options).items() if field in LENGTH_FIELDS}
        given = [flags.get(field, field) for field in _given_fields(args, options) if field not in lengths]
        given += ["--robust-additions"] if getattr(args, "robust_additions", False) else []
        if given or args.config:
            raise UsageError("--resume continues a run with its own config (only --epochs or --cycles may "
                             "lengthen it); drop " + ", ".join(given + (["--config"] if args.config else [])))
        run = Run.open(args.resume, args.runs_dir)
        content, notes = upgraded(run.config())
        for note in notes:
            print(f"note: {note}")
        _set_fields(content, lengths)
        if scratch:
            run = run.private_copy(scratch)
    else:
        content = _config_content(args, options)
    config = config_class.from_dict(content)
    if not args.resume:
        run = Run.create(config.to_dict(), scratch or args.runs_dir, config.name, owner_pid=os.getpid())
    distribute.set_mixed_precision(config.distribute.mixed_precision)
    print(f"run {run.id} in {run.root}")
    try:
        status = train_function(config, run, resume=bool(args.resume))
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    return {"run": run.id, "status": status}


def run(args) -> dict:
    from advcore.training.config import TrainConfig
    from advcore.training.runner import train

    return _run(args, TRAIN_OPTIONS, TrainConfig, train)


def run_gan(args) -> dict:
    from advcore.generative.gan_training import train_gan
    from advcore.training.config import GanConfig

    return _run(args, GAN_OPTIONS, GanConfig, train_gan)


def run_study(args) -> dict:
    """Creates the study's four runs (or takes up an earlier study's unfinished ones) and trains them
    one after another in this process; a stop ends the study, leaving later arms unstarted."""
    import socket

    from advcore.generative import study
    from advcore.storage.runs import Run, now, process_start_ticks
    from advcore.training.config import TrainConfig
    from advcore.training.runner import train

    if args.resume:
        record = study.read(args.resume, args.runs_dir)
    else:
        content = _config_content(args, TRAIN_OPTIONS)
        if not content.get("generator"):
            raise UsageError("a study needs --generator: the folder of a trained GAN run")
        for field, value in STUDY_DEFAULTS.items():
            if field not in vars(args):
                section, leaf = field.split(".")
                content.setdefault(section, {}).setdefault(leaf, value)
        base = TrainConfig.from_dict(content)
        record = study.create(base, base.generator, args.runs_dir, owner_pid=os.getpid())
    print(f"study {record['id']}: runs {', '.join(record['runs'].values())}")
    stopped = False
    for arm in study.ARMS:
        run = Run.open(record["runs"][arm], args.runs_dir)
        status = run.recorded_status()["status"]
        if status == "finished":
            continue
        if stopped:
            run.update_status(status="stopped", ended=now(), reason="the study was stopped before this arm")
            continue
        run.update_status(pid=os.getpid(), pid_start=process_start_ticks(os.getpid()), host=socket.gethostname())
        print(f"--- {arm}: run {run.id}")
        resume = bool(run.checkpoints())
        stopped = train(TrainConfig.from_dict(run.config()), run, resume=resume) == "stopped"
    print(study.table(record, args.runs_dir).to_string(index=False))
    return record
