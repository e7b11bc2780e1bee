"""`python -m advcore activations | traverse | explain | ara | profile`: what robustness buys, from a terminal."""

from __future__ import annotations

import argparse
from pathlib import Path

from advcore.cli import train_commands
from advcore.cli.parsing import UsageError, integer, number, positive_int

DEFAULT_PRESET = "advlab"


def _model_and_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="the classifier: a Keras 3 .keras file (loaded with safe_mode)")
    parser.add_argument("--dataset", default="fashion_mnist",
                        help="the model's dataset: test images and class names (default: fashion_mnist)")
    parser.add_argument("--data-dir", type=Path, default=None, help="folder holding the dataset files")


def _options(parser: argparse.ArgumentParser, rows) -> None:
    """Adds (flag, type, default, help) rows; the help states the default."""
    for flag, kind, default, text in rows:
        parser.add_argument(flag, type=kind, default=default, help=f"{text} (default: {default})")


def add_parsers(commands) -> None:
    activations = commands.add_parser(
        "activations", help="maximal class activations: the image of each class the model draws itself",
        description="Gradient ascent on each class logit from noise or the blurred mean image; writes one PNG "
                    "per class, grid.png, steps.gif, activations.npy and summary.json (with the judge's "
                    "perceptual-alignment score where the dataset has a judge).")
    _model_and_data(activations)
    activations.add_argument("--classes", default=None, help="comma-separated class indices (default: all)")
    activations.add_argument("--preset", choices=("advlab", "seed", "seed-better"), default=DEFAULT_PRESET,
                             help="advlab: best on a robust model (default); seed / seed-better: seed 000's settings")
    activations.add_argument("--start", choices=("noise", "mean"), default=None,
                             help="start from uniform noise or the blurred mean training image (default: the preset's)")
    for flag, kind, text in (("--steps", positive_int, "ascent steps"), ("--step-size", number, "step size"),
                             ("--jitter-every", integer, "roll one pixel every N steps (0: never)"),
                             ("--blur-every", integer, "3x3 Gaussian blur every N steps (0: never)"),
                             ("--l2", number, "weight of the L2 penalty"), ("--tv", number, "weight of total variation"),
                             ("--record-every", positive_int, "keep a frame every N steps")):
        activations.add_argument(flag, type=kind, default=None, help=f"{text} (default: the preset's)")
    _options(activations, [("--seed", integer, 0, "seed of the noise start and jitter")])
    activations.add_argument("--out", type=Path, required=True, help="output folder")

    traverse = commands.add_parser(
        "traverse", help="class traversal: a video of an image climbing toward another class",
        description="Sign steps on the target logit from a test image (seed 003: 400 x 0.01), optionally "
                    "inside an L2 or Linf budget; writes a labelled MP4 or GIF (by --out's extension).")
    _model_and_data(traverse)
    source = traverse.add_mutually_exclusive_group()
    source.add_argument("--index", type=integer, default=0, help="test image index (default: 0)")
    source.add_argument("--image", type=Path, default=None, help="an image file instead of a test image")
    traverse.add_argument("--target", type=integer, required=True, help="the class to climb toward")
    traverse.add_argument("--norm", choices=("l2", "linf"), default=None, help="stay inside this ball (default: none)")
    _options(traverse, [("--steps", positive_int, 400, "steps"), ("--step-size", number, 0.01, "sign step size"),
                        ("--eps", number, 0.0, "the ball's radius, with --norm"),
                        ("--every", positive_int, 1, "a frame every N steps"),
                        ("--fps", number, 10.0, "frames per second")])
    traverse.add_argument("--out", type=Path, required=True, help="output file: .mp4 or .gif")

    explain = commands.add_parser(
        "explain", help="adversarial explanations (Woods et al.): each class's evidence inside an RMSE budget",
        description="For each test image: explanations toward the true class, the most confident other class "
                    "and every class, inside RMSE rho; one folder per image with seed 004's file names.")
    _model_and_data(explain)
    _options(explain, [("--start", integer, 0, "first test image"), ("--count", positive_int, 10, "test images"),
                       ("--rho", number, 0.1, "RMSE budget"), ("--steps", positive_int, 35, "steps"),
                       ("--overshoot", number, 5.0, "step sizes sum to rho x this")])
    explain.add_argument("--out", type=Path, required=True, help="output folder")

    ara = commands.add_parser(
        "ara", help="Attack and BTR accuracy-robustness areas (Woods et al.)",
        description="Minimal RMSE perturbation per image that misclassifies it (Attack) or pushes the true class "
                    "to 1/K (BTR), on a seeded sample of test images; prints both ARAs.")
    _model_and_data(ara)
    _options(ara, [("--count", positive_int, 1000, "test images"), ("--seed", integer, 1776, "seed of the image sample"),
                   ("--steps", positive_int, 450, "steps per image"), ("--eps", number, 20.0, "total step length"),
                   ("--momentum", number, 0.9, "momentum")])
    ara.add_argument("--out", type=Path, default=None, help="folder for ara.csv, curve.csv and summary.json")

    profile = commands.add_parser(
        "profile", help="everything the Compare page shows for one model",
        description="Clean and PGD robust accuracy, Attack/BTR ARA, maximal class activations, traversals and "
                    "the judge's perceptual-alignment scores; writes profile.json, the images and ara.csv.")
    _model_and_data(profile)
    _options(profile, [("--count", positive_int, 1000, "test images")])
    profile.add_argument("--out", type=Path, required=True, help="output folder")
    train_commands.add_cluster_option(profile, "measure the test images in shards")
    train_commands.add_shards_option(profile)


def _load(args):
    from advcore import models
    from advcore.storage import data

    model = models.load(args.model)
    dataset = data.load(args.dataset, data_dir=args.data_dir, image_size=models.input_size(model))
    models.check_compatible(model, dataset.input_shape, dataset.num_classes)
    return model, dataset


def _judge(dataset_name: str):
    from advcore import models
    from advcore.interpret import alignment

    path = alignment.judge_path(dataset_name)
    return models.load(path) if path else None


def _classes(text: str | None, count: int) -> list[int]:
    if text is None:
        return list(range(count))
    try:
        classes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--classes must be comma-separated class indices, got {text!r}") from None
    if not classes or not all(0 <= c < count for c in classes):
        raise UsageError(f"--classes must be indices in 0..{count - 1}, got {text!r}")
    return classes


def run_activations(args) -> dict:
    import numpy as np

    from advcore.interpret import alignment, gradient_ascent
    from advcore.storage import files, images

    model, dataset = _load(args)
    classes = _classes(args.classes, dataset.num_classes)
    ascent, start = gradient_ascent.ACTIVATION_PRESETS[args.preset]
    changes = {name: getattr(args, name) for name in ("steps", "step_size", "jitter_every", "blur_every", "l2",
                                                      "tv", "record_every") if getattr(args, name) is not None}
    ascent = ascent.replace(**changes)
    result = gradient_ascent.maximal_activations(model, classes, ascent, start=args.start or start,
                                                 images=dataset.train.x[:5000], seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    np.save(args.out / "activations.npy", result.images)
    for image, c in zip(result.images, classes):
        images.write_png(args.out / f"{c}_{files.safe_name(dataset.class_names[c])}.png", image)
    images.write_png(args.out / "grid.png", images.grid(result.images))
    (args.out / "steps.gif").write_bytes(images.encode_gif([images.grid(frame) for frame in result.frames]))
    summary = {"model": str(args.model), "dataset": dataset.name, "classes": classes, "preset": args.preset,
               "settings": vars(ascent) | {"start": args.start or start},
               "final_target_logits": result.target_logits[-1].tolist()}
    judge = _judge(dataset.name)
    if judge is not None:
        score = summary["alignment"] = alignment.score(judge, result.images, classes)
        print(f"judge: accuracy {score['judge_accuracy']:.0%}, confidence {score['judge_confidence']:.2f}, "
              f"total variation {score['total_variation']:.3f}")
    files.write_json(args.out / "summary.json", summary)
    print(f"wrote {len(classes)} class images, grid.png and steps.gif to {args.out}")
    return summary


def run_traverse(args) -> dict:
    from advcore.interpret import gradient_ascent, video
    from advcore.storage import images, preprocess

    model, dataset = _load(args)
    if not 0 <= args.target < dataset.num_classes:
        raise UsageError(f"--target must be a class index in 0..{dataset.num_classes - 1}")
    if args.out.suffix.lower() not in (".mp4", ".gif"):
        raise UsageError("--out must end in .mp4 or .gif")
    if args.image is not None:
        image = preprocess.prepare(images.read_image(args.image), dataset.input_shape, preprocess.Preprocessing())
    elif 0 <= args.index < len(dataset.test):
        image = dataset.test.x[args.index]
    else:
        raise UsageError(f"--index must be in 0..{len(dataset.test) - 1}")
    settings = gradient_ascent.TRAVERSAL.replace(steps=args.steps, step_size=args.step_size, norm=args.norm,
                                                 eps=args.eps, record_every=args.every)
    result = gradient_ascent.traverse(model, image, args.target, settings)
    frames = video.traversal_frames(result, dataset.class_names)
    encoded = (video.encode_mp4(frames, args.fps) if args.out.suffix.lower() == ".mp4"
               else images.encode_gif(frames, 1 / args.fps))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(encoded)
    final = dataset.class_names[int(result.logits[-1, 0].argmax())]
    print(f"{len(frames)} frames to {args.out}; the last frame is classified {final}")
    return {"frames": len(frames), "final_class": final}


def run_explain(args) -> list[str]:
    from advcore.interpret import explain
    from advcore.storage import files

    model, dataset = _load(args)
    if not 0 <= args.start < len(dataset.test):
        raise UsageError(f"--start must be in 0..{len(dataset.test) - 1}")
    written = []
    for index in range(args.start, min(args.start + args.count, len(dataset.test))):
        label = int(dataset.test.y[index])
        result = explain.explain(model, dataset.test.x[index], label, rho=args.rho, steps=args.steps,
                                 overshoot=args.overshoot)
        folder = args.out / files.safe_name(f"{index}-{dataset.class_names[label]}")
        result.write(folder, dataset.class_names)
        written.append(str(folder))
        print(folder)
    return written


def run_ara(args) -> dict:
    from advcore.interpret import explain
    from advcore.storage import files

    model, dataset = _load(args)
    indices = explain.sample_indices(args.count, len(dataset.test), args.seed)
    result = explain.ara(model, dataset.test.x[indices], dataset.test.y[indices], indices=indices, eps=args.eps,
                         steps=args.steps, momentum=args.momentum,
                         report=lambda criterion, done, total: print(f"{criterion}: {done}/{total}", flush=True))
    summary = result.summary() | {"seed": args.seed, "model": str(args.model), "dataset": dataset.name}
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        files.write_text(args.out / "ara.csv", result.per_image().to_csv(index=False))
        files.write_text(args.out / "curve.csv", result.curve().to_csv(index=False))
        files.write_json(args.out / "summary.json", summary)
    print(f"accuracy {summary['accuracy']:.4f}  Attack ARA {summary['attack_ara']:.4f}  "
          f"BTR ARA {summary['btr_ara']:.4f}"
          f"  ({args.count} images)")
    return summary


def run_profile(args) -> dict:
    from advcore.evaluation import profile
    from advcore.interpret import alignment
    from advcore.jobs import cluster

    settings = profile.ProfileSettings(count=args.count)
    if address := cluster.cluster_address(args.cluster):
        from advcore.jobs import ray_evaluation

        judge = alignment.judge_path(args.dataset)
        computed = ray_evaluation.profile_sharded(
            str(args.model), args.dataset, settings, address, data_dir=args.data_dir,
            judge_path=str(judge) if judge else None, shards_asked=args.shards,
            report=lambda progress: print(f"{progress['fraction']:4.0%} {progress['cell']}", flush=True))
    elif args.shards:
        raise UsageError("--shards splits the work over a cluster: give --cluster too")
    else:
        model, dataset = _load(args)
        computed = profile.compute(model, dataset, settings, judge=_judge(dataset.name),
                                   report=lambda stage, fraction: print(f"{fraction:4.0%} {stage}", flush=True))
    profile.save(args.out, *computed)
    print(f"wrote {args.out / profile.PROFILE_FILE}")
    return computed[0]


COMMANDS = {"activations": run_activations, "traverse": run_traverse, "explain": run_explain, "ara": run_ara,
            "profile": run_profile}
