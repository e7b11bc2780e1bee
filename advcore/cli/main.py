"""`python -m advcore`: the terminal face of AdvLab (attack, evaluate, train, interpret).

Bad options end with one line on stderr and exit code 2; a dataset that cannot be found ends with
the list of places tried and exit code 1. TensorFlow is imported only after the options are valid,
so `--help` and option errors answer at once.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from pathlib import Path

from advcore.cli import certify_commands, interpret_commands, train_commands
from advcore.cli.parsing import EXIT_USAGE, Parser, UsageError, int_in, number, number_list, positive_int
from advcore.jobs import cluster
from advcore.training.config import WORST_OF_LOSSES

EXIT_FAILURE = 1


def _add_data_options(parser: argparse.ArgumentParser, default_count: int, required: bool = True) -> None:
    group = parser.add_argument_group("model and data")
    group.add_argument("--model", required=required, type=Path,
                       help="the classifier: a Keras 3 .keras file (loaded with safe_mode; a softmax "
                            "output is unwrapped to its logits)")
    group.add_argument("--dataset", default="fashion_mnist",
                       help="fashion_mnist (default), mnist, cifar10, cifar100, or the path of a folder "
                            "with one sub-folder of images per class")
    group.add_argument("--data-dir", type=Path, default=None,
                       help="folder holding the dataset files (default: $ADVLAB_DATA_DIR, the Keras "
                            "cache, system dataset folders, then a download)")
    group.add_argument("--split", choices=("test", "train"), default="test",
                       help="which split to take images from (default: test)")
    group.add_argument("--start", type=int_in(0, 10**9), default=0,
                       help="index of the first image of the split to use (default: 0)")
    group.add_argument("--count", type=int_in(1, 10**7), default=default_count,
                       help=f"how many consecutive images to use (default: {default_count})")
    group.add_argument("--batch-size", type=int_in(1, 65_536), default=500,
                       help="images attacked at once; bounds memory (default: 500)")
    group.add_argument("--seed", type=int_in(0, 2**32 - 1), default=0,
                       help="seed of the random starts; the same seed gives the same result (default: 0)")
    group.add_argument("--out", type=Path, required=True, help="output folder (created if missing)")


def _add_attack_options(parser: argparse.ArgumentParser, eps_help: str, eps_type, required: bool = True,
                        worst_case: bool = False) -> None:
    group = parser.add_argument_group("attack")
    group.add_argument("--method", choices=("fgsm", "fgm", "pgd", "mifgsm"), default="pgd",
                       help="fgsm: one sign step; fgm: one step with --scaling; pgd: projected gradient "
                            "descent with random start; mifgsm: momentum iterative FGSM (default: pgd)")
    group.add_argument("--norm", choices=("linf", "l2"), default="linf",
                       help="the threat model's norm ball (default: linf; fgm picks it from --scaling)")
    group.add_argument("--eps", type=eps_type, required=required, help=eps_help)
    group.add_argument("--steps", type=positive_int, default=None,
                       help="gradient steps (default: 1 for fgsm/fgm, 40 for pgd, 10 for mifgsm)")
    group.add_argument("--step-size", type=number, default=None,
                       help="size of each step (default: eps for one step, 1.25 eps with a random start, "
                            "2.5 eps/steps for pgd, eps/steps for mifgsm)")
    group.add_argument("--scaling", choices=("sign", "l2", "max", "raw"), default=None,
                       help="how the gradient becomes a step: its sign, unit L2 norm, unit max |value|, "
                            "or raw times --step-size (default: the norm's steepest ascent)")
    group.add_argument("--restarts", type=positive_int, default=1,
                       help="random restarts; each sample keeps its best one (default: 1)")
    group.add_argument("--momentum", type=number, default=None,
                       help="momentum decay in [0, 1] (default: 1.0 for mifgsm, else none)")
    losses = ("ce", "margin", WORST_OF_LOSSES) if worst_case else ("ce", "margin")
    group.add_argument("--loss", choices=losses, default="ce",
                       help="ce: cross-entropy; margin: CW-style logit margin" + (
                           f"; {WORST_OF_LOSSES}: both, each sample at its worst (PGD-50 with 10 restarts "
                           "and ce+margin is the strongest evaluation)" if worst_case else "") + " (default: ce)")
    start = group.add_mutually_exclusive_group()
    start.add_argument("--random-start", dest="random_start", action="store_true", default=None,
                       help="start from a random point of the ball (default for pgd)")
    start.add_argument("--no-random-start", dest="random_start", action="store_false",
                       help="start from the clean image")
    target = group.add_mutually_exclusive_group()
    target.add_argument("--target", type=int_in(0, 100_000), default=None,
                        help="targeted attack toward this class index (default: untargeted)")
    target.add_argument("--least-likely", action="store_true",
                        help="targeted attack toward each image's least likely class")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m advcore",
                    description="AdvLab from the terminal: attack classifiers and measure their robustness.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser,
                                     metavar="{attack,evaluate,train,train-gan,study,worker,activations,traverse,explain,ara,profile}")
    attack = commands.add_parser(
        "attack", help="attack images and save the adversarial examples",
        description="Attack images of a dataset; writes each adversarial image as PNG, all of them as "
                    "exact float32 adversarial.npy, and summary.json with per-image results.")
    _add_data_options(attack, default_count=16)
    _add_attack_options(attack, "perturbation budget in [0,1] pixel units, e.g. 0.1 or 8/255", number)
    evaluate_parser = commands.add_parser(
        "evaluate", help="robust accuracy over a list of eps (a robustness curve)",
        description="Measure clean and robust accuracy at each eps; writes curve.csv and summary.json.")
    _add_data_options(evaluate_parser, default_count=1000, required=False)
    _add_attack_options(evaluate_parser, "comma-separated budgets, e.g. 0,0.05,0.1 or 2/255,8/255", number_list,
                        required=False, worst_case=True)
    evaluate_parser.add_argument("--autoattack", choices=("standard", "rand"), default=None,
                                 help="instead of --method: AutoAttack in --norm at each --eps; standard runs "
                                      "APGD-CE, APGD-T, FAB-T and Square, rand (for randomised models) APGD-CE "
                                      "and APGD-DLR averaged over 20 draws; the field's robust accuracy")
    evaluate_parser.add_argument("--sanity", action="store_true",
                                 help="also run the gradient-masking checks at the largest eps and report flags")
    evaluate_parser.add_argument("--plan", type=Path, default=None,
                                 help="instead of --model/--eps: a JSON evaluation plan (several models, attacks and "
                                 "eps grids, as the Evaluate page downloads it); writes results.json, results.csv "
                                 "and per_image.csv")
    train_commands.add_cluster_option(evaluate_parser, "run a --plan in shards of test images")
    train_commands.add_shards_option(evaluate_parser)
    worker = commands.add_parser(
        "worker", help="run queued evaluations (the dashboard starts this itself)",
        description="Run the evaluations queued under <runs root>/_evaluations one after another, keeping "
                    "TensorFlow and models loaded; exit after --idle-exit seconds without work.")
    worker.add_argument("--runs-dir", type=Path, default=None, help="the runs root (default: $ADVLAB_RUNS_DIR or ./runs)")
    worker.add_argument("--idle-exit", type=number, default=300.0,
                        help="seconds without work before the worker exits (default: 300)")
    train_commands.add_cluster_option(worker, "run each evaluation and profile in shards of test images")
    check_model = commands.add_parser(
        "check-model", help="check that a .keras file is a usable classifier (the app runs this in a sandbox)",
        description="Load a .keras file as AdvLab would (archive checks, built-in classes only, safe_mode, the "
                    "parameter cap) and print its parameters, input shape and classes as JSON.")
    check_model.add_argument("path", type=Path)
    check_model.add_argument("--max-parameters", type=positive_int, default=None,
                             help="the parameter cap (default: $ADVLAB_MAX_PARAMETERS or 50,000,000)")
    scheduler = commands.add_parser(
        "scheduler", help="start queued training runs (the dashboard starts this itself)",
        description="Start the training runs queued under the runs root, oldest first, each as its own "
                    "process, while fewer than $ADVLAB_MAX_RUNS (default 1) train; exit after --idle-exit "
                    "seconds with nothing queued or training. One scheduler serves a runs root.")
    scheduler.add_argument("--runs-dir", type=Path, default=None,
                           help="the runs root (default: $ADVLAB_RUNS_DIR or ./runs)")
    scheduler.add_argument("--idle-exit", type=number, default=300.0,
                           help="seconds with nothing to do before the scheduler exits (default: 300)")
    train_commands.add_cluster_option(scheduler, "submit the queued runs as Ray jobs")
    train = commands.add_parser(
        "train", help="train a classifier (vanilla, adversarial, interleaved) as a run",
        description="Train as a run under the runs root: config, status, history.csv, checkpoints and "
                    "model.keras. Ctrl+C (or SIGTERM) finishes the batch, saves and stops; --resume "
                    "continues from the last finished epoch.")
    train_commands.add_options(train)
    train_gan = commands.add_parser(
        "train-gan", help="train a class-conditional GAN (AC-GAN, WGAN-GP) as a run",
        description="Train an AC-GAN with gradient penalty as a run: config, status, history.csv (critic, "
                    "generator, penalty and class losses), a sample grid per epoch under samples/, "
                    "checkpoints, generator.keras and critic.keras. Ctrl+C saves and stops; --resume continues.")
    train_commands.add_gan_options(train_gan)
    study = commands.add_parser(
        "study", help="train one recipe four ways (none, FGSM, GAN samples, unrestricted) and tabulate",
        description="The augmentation study: four runs of the same classifier recipe, trained with no "
                    "augmentation, least-likely FGSM examples, GAN samples and unrestricted examples (a "
                    "share --mix-fraction of each batch, weighted --mix-weight; defaults 0.5 and 0.3), each "
                    "checked per epoch on --gan-check-size GAN samples (default 500). Prints and records "
                    "clean, PGD and GAN accuracies; --resume STUDY finishes a stopped study.")
    train_commands.add_study_options(study)
    interpret_commands.add_parsers(commands)
    certify_commands.add_parser(commands)
    return parser


def _specs(args, eps: float) -> list:
    """The attack the flags describe, one spec per loss for ce+margin."""
    losses = ("ce", "margin") if args.loss == WORST_OF_LOSSES else (args.loss,)
    return [_spec(args, eps, loss) for loss in losses]


def _spec(args, eps: float, loss: str | None = None):
    from advcore import attacks

    options = {"loss": loss or args.loss, "restarts": args.restarts, "scaling": args.scaling}
    for name in ("step_size", "momentum", "random_start"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    if args.target is not None:
        options["target"] = "targeted"
    elif args.least_likely:
        options["target"] = "least_likely"
    return attacks.build(args.method, eps, norm=args.norm, steps=args.steps, **options)


def _load_inputs(args):
    from advcore import models
    from advcore.storage import data

    model = models.load(args.model, logits=False)
    if warning := models.output_warning(model):
        print(f"warning: {args.model.name}: {warning}", file=sys.stderr)
    model = models.as_logits(model)
    dataset = data.load(args.dataset, data_dir=args.data_dir, image_size=models.input_size(model), splits=(args.split,))
    split = dataset.test if args.split == "test" else dataset.train
    if not 0 <= args.start < len(split):
        raise UsageError(f"--start {args.start} is outside the {args.split} split (0..{len(split) - 1})")
    stop = min(args.start + args.count, len(split))
    models.check_compatible(model, dataset.input_shape, dataset.num_classes)
    if args.target is not None and not 0 <= args.target < dataset.num_classes:
        raise UsageError(f"--target {args.target} is not a class of {dataset.name} (0..{dataset.num_classes - 1})")
    return dataset, split.x[args.start:stop], split.y[args.start:stop], model


def _run_attack(args) -> dict:
    import numpy as np

    from advcore import attacks
    from advcore.storage import files, images

    spec = _spec(args, args.eps)
    dataset, x, y, model = _load_inputs(args)
    result = attacks.attack(model, x, y, spec, target=args.target, batch_size=args.batch_size, seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    np.save(args.out / "adversarial.npy", result.x_adv)
    names = dataset.class_names
    samples = []
    for i, index in enumerate(range(args.start, args.start + len(x))):
        file = f"{index:05d}_{names[y[i]]}_as_{names[result.predictions[i]]}.png".replace("/", "-")
        images.write_png(args.out / file, result.x_adv[i])
        samples.append({"index": index, "label": int(y[i]), "attack_label": int(result.labels[i]),
                        "clean_prediction": int(result.clean_predictions[i]),
                        "adversarial_prediction": int(result.predictions[i]),
                        "success": bool(result.success[i]), "loss": float(result.loss[i]),
                        "linf": float(result.linf[i]), "l2": float(result.l2[i]), "png": file})
    summary = {"model": str(args.model), "dataset": dataset.name, "split": args.split,
               "attack": _spec_json(spec), "seed": args.seed, "count": len(x),
               "clean_accuracy": float(np.mean(result.clean_predictions == y)),
               "adversarial_accuracy": float(np.mean(result.predictions == y)),
               "success_rate": result.success_rate, "class_names": list(names), "samples": samples}
    files.write_json(args.out / "summary.json", summary)
    print(f"attacked {len(x)} images: clean accuracy {summary['clean_accuracy']:.1%}, "
          f"after attack {summary['adversarial_accuracy']:.1%}, success {summary['success_rate']:.1%}; "
          f"wrote {args.out}")
    return summary


def _spec_json(spec) -> dict:
    import dataclasses

    return dataclasses.asdict(spec) | {"step_size": spec.effective_step_size, "scaling": spec.effective_scaling}


def _run_plan(args) -> dict:
    from advcore.evaluation import plans
    from advcore.storage import files

    plan = plans.Plan.from_dict(files.read_json(args.plan, "plan file"))
    args.out.mkdir(parents=True, exist_ok=True)

    def report(progress: dict) -> None:
        print(f"[{progress['done']}/{progress['total']}] {progress['cell']}", flush=True)

    if address := cluster.cluster_address(args.cluster):
        from advcore.jobs import ray_evaluation

        _, results = ray_evaluation.run_sharded(plan, args.out, address, shards_asked=args.shards, report=report)
    else:
        _, results = plans.run_plan(plan, args.out, report=report)
    for row in results.rows:
        print(f"{row['model']} / {row['attack']} / eps {row['eps']:.4g}: robust accuracy "
              f"{row['robust_accuracy']:.1%} (clean {row['clean_accuracy']:.1%})")
    for flag in results.flags:
        print(f"warning [{flag['model']} / {flag['attack']} / {flag['code']}]: {flag['message']}")
    print(f"wrote {args.out / 'results.json'}, results.csv and per_image.csv")
    return results.to_dict()


def _run_evaluate(args) -> dict:
    from advcore.attacks import autoattack
    from advcore.evaluation import robustness
    from advcore.storage import data, files

    if args.plan is not None:
        if args.model is not None or args.eps is not None:
            raise UsageError("--plan names the models and eps itself: leave out --model and --eps")
        return _run_plan(args)
    if cluster.cluster_address(args.cluster) or args.shards:
        raise UsageError("--cluster and --shards run a --plan: write the models, attacks and eps as a plan "
                         "(the Evaluate page downloads one)")
    if args.model is None:
        raise UsageError("the following arguments are required: --model (or --plan)")
    if not args.eps:
        raise UsageError("--eps needs at least one value")
    if args.autoattack:
        classes = len(data.CLASS_NAMES.get(args.dataset, range(10)))
        for eps in args.eps:  # validates every eps before any work
            autoattack.settings_of(args.autoattack, args.norm, eps, classes)
        norm, attack = args.norm, {"autoattack": args.autoattack, "norm": args.norm, "eps": list(args.eps)}
    else:
        specs = [_specs(args, eps) for eps in args.eps]  # validates every eps before any work
        norm, attack = specs[-1][0].norm, _spec_json(specs[-1][0]) | {"eps": list(args.eps), "loss": args.loss}
    _, x, y, model = _load_inputs(args)
    if args.autoattack:
        curve = robustness.autoattack_curve(model, x, y, args.eps, norm=norm, version=args.autoattack,
                                            batch_size=args.batch_size, seed=args.seed)
    else:
        curve = robustness.robustness_curve(model, x, y, specs[-1], args.eps, batch_size=args.batch_size,
                                            seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    curve.to_csv(args.out / "curve.csv", index=False)
    summary = {"model": str(args.model), "dataset": args.dataset, "split": args.split, "count": len(x),
               "attack": attack, "curve": curve.to_dict(orient="records")}
    if args.autoattack:
        summary["autoattack_flags"] = [flag.__dict__ for row in summary["curve"]
                                       for flag in robustness.autoattack_flags(row, max(0.005, 1.5 / len(x)))]
    if args.sanity:
        flags, figures = robustness.sanity_checks(model, x, y, norm=norm, eps=max(args.eps),
                                                  batch_size=args.batch_size, seed=args.seed)
        summary["sanity"] = {"flags": [flag.__dict__ for flag in flags], "figures": figures}
    files.write_json(args.out / "summary.json", summary)
    for row in summary["curve"]:
        breakdown = ", ".join(f"{name} {value:.1%}" for name, value in robustness.accuracy_after(row).items())
        left = f"; left after {breakdown}" if breakdown else ""
        print(f"eps {row['eps']:.4g}: robust accuracy {row['robust_accuracy']:.1%} "
              f"(clean {row['clean_accuracy']:.1%}, {row['seconds']:.1f} s){left}")
    for flag in summary.get("autoattack_flags", []) + summary.get("sanity", {}).get("flags", []):
        print(f"warning [{flag['code']}]: {flag['message']}")
    return summary


def _run_worker(args) -> None:
    from advcore.evaluation import worker

    worker.work(args.runs_dir, idle_exit=args.idle_exit, address=cluster.cluster_address(args.cluster))


def _run_check_model(args) -> None:
    import json

    import tensorflow

    from advcore import models
    from advcore.storage import model_files

    try:
        model = models.load(args.path, logits=False, max_parameters=args.max_parameters)
        models.as_logits(model)  # a softmax AdvLab cannot unwrap is refused here
    except (MemoryError, tensorflow.errors.ResourceExhaustedError):
        raise models.ModelError(f"{args.path}: {model_files.OUT_OF_MEMORY}") from None
    warning = models.output_warning(model)
    if warning:
        print(f"warning: {args.path.name}: {warning}", file=sys.stderr)
    print(json.dumps({"parameters": model.count_params(), "input_shape": list(model.inputs[0].shape[1:]),
                      "classes": int(model.outputs[0].shape[-1]),
                      "output_activation": models.output_activation(model)}))


def _run_scheduler(args) -> None:
    from advcore.jobs import scheduler
    from advcore.storage import locks

    try:
        scheduler.serve(args.runs_dir, idle_exit=args.idle_exit, address=cluster.cluster_address(args.cluster))
    except locks.LockHeld as held:
        raise RuntimeError(f"a scheduler already serves {held.path.parent} (pid {held.pid})") from None
    except cluster.ClusterError as error:
        raise RuntimeError(str(error)) from None


def _prepare_out(args) -> None:
    """Makes --out's folder (traverse: the folder of its file) before any work, or raises UsageError saying
    why it cannot be: a file in the way, a path that cannot be made, a folder that cannot be written."""
    out = getattr(args, "out", None)
    if out is None:
        return
    file_out = args.command == "traverse"
    if file_out and out.is_dir():
        raise UsageError(f"--out {out} is a folder; name the .mp4 or .gif file to write")
    folder = out.parent if file_out else out
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--out {folder} is a file, not a folder: name a folder for the results")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"--out {out}: the folder cannot be made ({error.strerror})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: the folder {folder} cannot be written")


def _import_tensorflow_quietly() -> None:
    """Imports TensorFlow with this process's devices set up (`advcore.devices.configure`: memory growth
    or the $ADVLAB_GPU_MEMORY_MB cap on every GPU it sees). TensorFlow's C++ start-up notices ignore
    TF_CPP_MIN_LOG_LEVEL; keep them off the terminal, and the device probe's too ("failed call to cuInit"
    on a machine without a GPU: the device is reported anyway)."""
    from advcore import devices

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        devices.configure()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"{parser.prog} {args.command}"
    if args.command == "scheduler":  # starts processes only: no TensorFlow
        try:
            _run_scheduler(args)
        except RuntimeError as error:
            print(f"{prog}: error: {error}", file=sys.stderr)
            return EXIT_FAILURE
        return 0
    try:
        if args.command in ("evaluate", "worker", "profile"):
            cluster.cluster_address(args.cluster)  # a malformed address is refused before TensorFlow loads
        if args.command in ("train", "train-gan") and (address := cluster.cluster_address(args.cluster)):
            print(json.dumps(train_commands.submit_to_cluster(args, address)))  # starts nothing here: no TensorFlow
            return 0
        if args.command in ("train", "train-gan"):
            if stale := train_commands.stale_attempt(args):
                print(f"{prog}: nothing to do: {stale}")
                return 0
            if group := train_commands.worker_group(args):  # several workers: Ray Train's, driven from here
                from advcore.jobs import ray_training

                return ray_training.train(*group, args)
            train_commands.precheck(args)
            train_commands.take_gpus(args)
        _prepare_out(args)
    except (UsageError, ValueError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except cluster.ClusterError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    if args.command == "check-model":  # the same limits whether the app's sandbox or a person runs it
        from advcore.storage import model_files

        model_files.limit_resources()
    _import_tensorflow_quietly()
    import tensorflow

    from advcore.models import ModelError
    from advcore.storage.data import DatasetFormatError, DatasetNotFoundError
    from advcore.storage.images import ImageError
    from advcore.storage.runs import RunError, TrainingDiverged

    try:
        {"attack": _run_attack, "evaluate": _run_evaluate, "train": train_commands.run,
         "train-gan": train_commands.run_gan, "study": train_commands.run_study, "worker": _run_worker,
         "check-model": _run_check_model, "certify": certify_commands.run,
         **interpret_commands.COMMANDS}[args.command](args)
    except (UsageError, ValueError, ModelError, ImageError, DatasetFormatError, RunError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (DatasetNotFoundError, cluster.ClusterError) as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except (TrainingDiverged, MemoryError, tensorflow.errors.ResourceExhaustedError, OSError) as error:
        if isinstance(error, OSError) and error.errno not in EXPECTED_OS_ERRORS:
            raise
        print(f"{prog}: error: {_expected_failure(error)}", file=sys.stderr)
        return EXIT_FAILURE
    return 0


EXPECTED_OS_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES)


def _expected_failure(error: BaseException) -> str:
    """One line for the failures a machine causes, not the code: what happened and what to do."""
    from advcore.storage.runs import TrainingDiverged

    if isinstance(error, OSError):
        where = f" ({error.filename})" if error.filename else ""
        return (f"{error.strerror}{where}: free space or fix the permissions of the runs folder; a run keeps "
                "every finished epoch, and --resume continues it")
    if not isinstance(error, TrainingDiverged):
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        return (f"out of memory ({first}): lower the batch size, the model's width or the number of images "
                "attacked at once")
    return str(error)
