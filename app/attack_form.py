"""Attack controls shared by the Playground and the Evaluate page: method, budget, steps, target."""

from __future__ import annotations

import argparse
import dataclasses

import streamlit as st

from advcore import attacks
from advcore.attacks import checks
from advcore.cli.parsing import number
from advcore.storage import data
from app.text import counted

# label -> (method, fixed options); every choice of the course assignment and the usual iterative ones
METHODS = {
    "FGSM: sign of the gradient": ("fgsm", {}),
    "FGM: gradient scaled to L2 norm eps": ("fgm", {"scaling": "l2"}),
    "FGM: gradient scaled to max |value| eps": ("fgm", {"scaling": "max"}),
    "FGM: raw gradient times a constant": ("fgm", {"scaling": "raw"}),
    "PGD, Linf ball": ("pgd", {"norm": "linf"}),
    "PGD, L2 ball": ("pgd", {"norm": "l2"}),
    "MI-FGSM: momentum, Linf ball": ("mifgsm", {"norm": "linf"}),
}
TARGETS = ("untargeted", "a chosen class", "least likely class")
UNITS = ("0-1", "/255")
MAX_STEPS, MAX_RESTARTS = 1000, 100


@dataclasses.dataclass(frozen=True)
class AttackChoice:
    spec: attacks.AttackSpec
    target: int | None
    seed: int
    description: str


def parse_eps(text: str, unit: str) -> float:
    """'0.1', '8/255' or, in /255 units, '8': the budget in [0, 1] pixel units."""
    try:
        value = number(text)
    except argparse.ArgumentTypeError as error:
        raise ValueError(f"{error}; in /255 units write e.g. 8") from None
    return value / 255 if unit == "/255" else value


def _count(label: str, default: int, largest: int, key: str, column) -> int:
    value = column.number_input(label, value=default, step=1, key=key)
    if not 1 <= value <= largest:
        raise ValueError(f"{label.lower()} must lie in 1..{largest}, got {value}")
    return int(value)


def attack_controls(dataset: str | None, class_names: list[str], input_shape, key: str = "attack",
                    avoid: int | None = None) -> AttackChoice | None:
    """The controls; None after showing on the page why the chosen values cannot run. A chosen target
    starts at the class after `avoid` (the image's true class or prediction: no target to reach there)."""
    method_label = st.selectbox("Method", list(METHODS), index=4, key=f"{key}.method")
    method, fixed = METHODS[method_label]
    norm = attacks.fgm_norm(fixed["scaling"]) if method == "fgm" else fixed.get("norm", "linf")
    one_step = method in ("fgsm", "fgm")
    standard = data.standard_eps(dataset, norm)
    c1, c2, c3 = st.columns([2, 2, 3])
    unit = c1.radio("eps units", UNITS, horizontal=True, key=f"{key}.unit",
                    help="0-1: pixel values in [0, 1]; /255: in 8-bit grey levels (8 means 8/255)")
    default_text = f"{standard * 255:.4g}" if unit == "/255" else f"{standard:.4g}"
    eps_text = c2.text_input(f"eps ({norm})", value=default_text, key=f"{key}.eps.{norm}.{unit}",
                             help=f"the perturbation budget; standard for {dataset or 'this data'}: {standard:.4g}")
    target_mode = c3.radio("Target", TARGETS, horizontal=True, key=f"{key}.target")
    c4, c5, c6, c7 = st.columns(4)
    try:
        eps = parse_eps(eps_text, unit)
        checks.check_budget(eps, norm, input_shape)
        c2.caption(f"= {eps:.4g} = {eps * 255:.3g}/255")
        steps = 1 if one_step else _count("Steps", 40 if method == "pgd" else 10, MAX_STEPS, f"{key}.steps", c4)
        restarts = 1 if one_step else _count("Restarts", 1, MAX_RESTARTS, f"{key}.restarts", c5)
        raw = fixed.get("scaling") == "raw"  # its one setting is the constant, not a step size
        auto_step = not raw and (one_step or c6.checkbox("Default step size", True, key=f"{key}.auto"))
        options = dict(fixed, loss=c7.radio("Loss", attacks.LOSSES, horizontal=True, key=f"{key}.loss",
                                            help="ce: cross-entropy; margin: CW-style logit margin"))
        if not auto_step:
            step_text = c6.text_input("Constant c (gradient x c)" if raw else "Step size (same units as eps)",
                                      value=eps_text, key=f"{key}.step_size.{unit}")
            options["step_size"] = parse_eps(step_text, unit)
        if restarts > 1:
            options["random_start"] = True
        if not one_step:
            options["early_stop"] = c5.checkbox("Stop once fooled", False, key=f"{key}.early_stop",
                                                help="keep the first iterate that fools the model: "
                                                     "usually a smaller perturbation")
        target = None
        if target_mode == TARGETS[1]:
            first = 0 if avoid is None else (avoid + 1) % len(class_names)
            target = class_names.index(st.selectbox("Target class", class_names, index=first,
                                                    key=f"{key}.target_class"))
            options["target"] = "targeted"
        elif target_mode == TARGETS[2]:
            options["target"] = "least_likely"
        spec = attacks.build(method, eps, steps=None if one_step else steps, restarts=restarts, **options)
        seed = int(st.number_input("Seed of the random start", value=0, step=1, key=f"{key}.seed")
                   ) if spec.random_start else 0
    except ValueError as error:
        st.error(f"Cannot run this attack: {error}")
        return None
    return AttackChoice(spec, target, seed, describe(spec))


def describe(spec: attacks.AttackSpec) -> str:
    steps = f"{spec.steps} steps of {spec.effective_step_size:.4g}" if spec.steps > 1 else "one step"
    parts = [f"{spec.norm} eps {spec.eps:.4g}", steps, f"{spec.effective_scaling} scaling"]
    if spec.random_start:
        parts.append(f"random start, {counted(spec.restarts, 'restart')}")
    if spec.momentum:
        parts.append(f"momentum {spec.momentum:g}")
    return ", ".join(parts + [f"{spec.loss} loss", spec.target.replace("_", " ")])
