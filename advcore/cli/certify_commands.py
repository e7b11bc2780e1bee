"""`python -m advcore certify`: certified L2 robustness by randomized smoothing, from a terminal."""

from __future__ import annotations

from pathlib import Path

from advcore.cli.parsing import UsageError, integer, number, number_list, positive_int

RADII = "0,0.25,0.5,0.75,1,1.5"
CERTIFICATES_FILE, SUMMARY_FILE = "certificates.csv", "summary.json"


def add_parser(commands) -> None:
    certify = commands.add_parser(
        "certify", help="certified L2 radii of the smoothed classifier (randomized smoothing, Cohen et al. 2019)",
        description="CERTIFY over test images: the smoothed classifier's class and certified L2 radius per image "
                    "(prediction -1 where it abstains); writes certificates.csv and summary.json (certified "
                    "accuracy on a radius grid, the abstention rate and the average certified radius).")
    certify.add_argument("--model", type=Path, required=True, help="the base classifier: a Keras 3 .keras file")
    certify.add_argument("--dataset", default="fashion_mnist", help="whose test images (default: fashion_mnist)")
    certify.add_argument("--data-dir", type=Path, default=None, help="folder holding the dataset files")
    certify.add_argument("--sigma", type=number, required=True,
                         help="the noise's standard deviation, in [0, 1] pixel units (the base classifier's own)")
    certify.add_argument("--mode", choices=("quick", "paper"), default="quick",
                         help="quick: n = 10,000; paper: Cohen et al.'s n0 = 100, n = 100,000, alpha = 0.001 "
                              "(default: quick)")
    certify.add_argument("--n0", type=positive_int, default=None, help="draws that guess the top class (mode's)")
    certify.add_argument("--n", type=positive_int, default=None, help="draws that bound its probability (mode's)")
    certify.add_argument("--alpha", type=number, default=None, help="the failure probability per image (mode's)")
    certify.add_argument("--count", type=positive_int, default=500, help="test images (default: 500)")
    certify.add_argument("--start", type=integer, default=0, help="the first test image's index (default: 0)")
    certify.add_argument("--every", type=positive_int, default=1,
                         help="take every k-th test image from --start (the paper: 20) (default: 1)")
    certify.add_argument("--seed", type=integer, default=0, help="the noise's seed (default: 0)")
    certify.add_argument("--batch-size", type=positive_int, default=None,
                         help="noisy copies per forward pass, a multiple of 100 (default: 64 MiB of them)")
    certify.add_argument("--radii", type=number_list, default=number_list(RADII),
                         help=f"the radii of the certified-accuracy table (default: {RADII})")
    certify.add_argument("--out", type=Path, required=True, help="output folder")


def run(args) -> dict:
    import numpy as np

    from advcore import models
    from advcore.certification import smoothing
    from advcore.storage import data, files

    model = models.load(args.model)
    dataset = data.load(args.dataset, data_dir=args.data_dir, image_size=models.input_size(model), splits=("test",))
    indices = args.start + args.every * np.arange(args.count)
    if args.start < 0 or indices[-1] >= len(dataset.test):
        raise UsageError(f"--start {args.start}, --every {args.every} and --count {args.count} reach test image "
                         f"{indices[-1]}, outside the test split's 0..{len(dataset.test) - 1}")
    setting = smoothing.Smoothing.of_mode(args.mode, args.sigma, n0=args.n0, n=args.n, alpha=args.alpha,
                                          seed=args.seed)
    x, y = dataset.test.x[indices], dataset.test.y[indices]
    certificates = smoothing.certify(model, x, setting, indices=indices, batch_size=args.batch_size,
                                     report=lambda done, total: print(f"[{done}/{total}] certified", flush=True))
    summary = smoothing.summary(certificates, y, args.radii) | {
        "settings": setting.to_dict(), "images": {"count": args.count, "start": args.start, "every": args.every}}
    files.write_text(args.out / CERTIFICATES_FILE, certificates.table(indices, y).to_csv(index=False))
    files.write_json(args.out / SUMMARY_FILE, summary)
    for row in summary["certified_accuracy"]:
        print(f"certified accuracy at r = {row['radius']:g}: {row['certified_accuracy']:.1%}")
    print(f"smoothed accuracy {summary['smoothed_accuracy']:.1%}; abstained on {summary['abstention_rate']:.1%}; ACR {summary['acr']:.3f} (sigma {setting.sigma:g}, "
          f"n {setting.n:,}, alpha {setting.alpha:g}, {args.count} images)")
    return summary
