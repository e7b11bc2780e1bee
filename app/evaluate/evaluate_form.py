"""The Evaluate page's form: models, attacks, eps grids and images, checked into a plan."""

from __future__ import annotations

import streamlit as st

from advcore.evaluation import plans
from advcore.storage import data
from advcore.training.config import WORST_OF_LOSSES
from app.attack_form import UNITS, parse_eps
from app.registry import ModelEntry

# label -> (method, options); steps, restarts and loss come from the form, AutoAttack's version and the
# certificate's sigma and draws too
ATTACKS = {"AutoAttack Linf": (plans.AUTOATTACK, {"norm": "linf"}), "AutoAttack L2": (plans.AUTOATTACK, {"norm": "l2"}),
           "FGSM": ("fgsm", {}), "PGD Linf": ("pgd", {"norm": "linf"}), "PGD L2": ("pgd", {"norm": "l2"}),
           "MI-FGSM Linf": ("mifgsm", {"norm": "linf"}), "FGM L2": ("fgm", {"scaling": "l2"}),
           "Certified L2 (randomized smoothing)": (plans.CERTIFY, {})}
VERSIONS = {"standard": "standard: APGD-CE, APGD-T, FAB-T, Square", "rand": "rand: for randomised models"}
MODES = {"quick": "quick: n = 10,000", "paper": "paper: n = 100,000 (Cohen et al.)"}
GRID_POINTS = (0, 0.25, 0.5, 0.75, 1.0)  # default grid: fractions of the dataset's standard eps


def _grid_text(dataset: str | None, norm: str, unit: str) -> str:
    standard = data.standard_eps(dataset, norm) * (255 if unit == "/255" else 1)
    return ", ".join(f"{standard * f:.4g}" for f in GRID_POINTS)


def _attack_refs(names: list[str], steps: int, restarts: int, loss: str, version: str,
                 smoothing: tuple[float, str]) -> list[plans.AttackRef]:
    refs = []
    for name in names:
        method, options = ATTACKS[name]
        if method == plans.AUTOATTACK:
            refs.append(plans.AttackRef(f"{name} ({version})", method, options | {"version": version}))
            continue
        if method == plans.CERTIFY:
            sigma, mode = smoothing
            refs.append(plans.AttackRef(f"Certified L2, sigma {sigma:g} ({mode})", method,
                                        {"sigma": sigma, "mode": mode}))
            continue
        options = dict(options, loss=loss)
        label = name
        if method in ("pgd", "mifgsm"):
            options |= {"steps": steps, "restarts": restarts}
            label = f"{name}, {steps} steps" + (f" x {restarts} restarts" if restarts > 1 else "")
        if loss != "ce":
            label += f", {loss}"
        refs.append(plans.AttackRef(label, method, options))
    return refs


MAX_SHARDS = 256


def evaluate_form(entries: dict[str, ModelEntry],
                  shards_offer: tuple[int, str] | None = None) -> tuple[plans.Plan, str, int | None] | None:
    """The form; on submit a checked plan, its name and the shards asked (None off a cluster), or None
    after showing what is wrong. `shards_offer`, on a Ray cluster, is the default shards and why."""
    usable = {key: e for key, e in entries.items() if data.available(e.card.get("dataset"))}
    if not usable:
        st.info("No model with a known dataset yet: train one, or use a bundled model.")
        return None
    first = next(iter(usable.values())).card["dataset"]
    default_models = [k for k, e in usable.items() if e.source == "bundled" and e.card["dataset"] == first]
    with st.form("evaluate", enter_to_submit=False):
        chosen = st.multiselect("Models (same dataset)", list(usable), default=default_models,
                                format_func=lambda k: usable[k].label, key="eval.models")
        attack_names = st.multiselect("Attacks", list(ATTACKS), default=["FGSM", "PGD Linf"], key="eval.attacks",
                                      help="AutoAttack is the field's standard robust accuracy (Croce & Hein 2020): "
                                           "an ensemble of parameter-free attacks, each run on the images all "
                                           "earlier ones left robust")
        what, how, where = st.columns(3, gap="large")  # AutoAttack's version; the gradient attacks; the budgets
        version = what.radio("AutoAttack version", list(VERSIONS), format_func=VERSIONS.get, key="eval.version")
        sigma = what.number_input("Smoothing sigma (certified)", value=0.25, step=0.05, format="%.2f",
                                  key="eval.sigma", help="the noise of the smoothed classifier, in [0, 1] pixel "
                                  "units: certify a model at the sigma it was trained with noise at")
        mode = what.radio("Certification draws", list(MODES), format_func=MODES.get, key="eval.mode",
                          help="n0 = 100 draws guess the class, n more bound its probability at alpha = 0.001; "
                               "radii are on the L2 eps grid")
        how.caption("The gradient attacks' settings (AutoAttack sets its own):")
        c1, c2 = how.columns(2)
        steps = c1.number_input("Steps (PGD, MI-FGSM)", value=20, step=1, key="eval.steps")
        restarts = c2.number_input("Restarts", value=1, step=1, key="eval.restarts")
        loss = how.radio("Loss", ("ce", "margin", WORST_OF_LOSSES), horizontal=True, key="eval.loss",
                         help=f"{WORST_OF_LOSSES}: each image attacked with both losses and counted at its worst; "
                              "with 50 steps and 10 restarts, the strongest PGD evaluation")
        sanity = how.checkbox("Gradient-masking checks", True, key="eval.sanity",
                              help="zero gradients, PGD weaker than FGSM, accuracy rising with eps, large eps "
                                   "not reaching 0%: each flags an evaluation that overestimates robustness")
        unit = where.radio("eps units", UNITS, horizontal=True, key="eval.unit")
        linf_text = where.text_input("Linf eps grid", _grid_text(first, "linf", "0-1"), key="eval.linf")
        l2_text = where.text_input("L2 eps grid", _grid_text(first, "l2", "0-1"), key="eval.l2")
        c4, c5 = where.columns(2)
        count = c4.number_input(f"Test images (1..{plans.MAX_IMAGES})", value=1000, step=100, key="eval.count")
        name = c5.text_input("Name", "evaluation", key="eval.name")
        shards = None
        if shards_offer:
            shards = where.number_input(f"Shards on the cluster (1..{MAX_SHARDS})", 1, MAX_SHARDS,
                                        min(shards_offer[0], MAX_SHARDS), key="eval.shards",
                                        help=f"{shards_offer[1]}. Each shard is a Ray task over a range of the "
                                             "test images; their results are merged image for image, equal to "
                                             "one unsharded evaluation")
        if not st.form_submit_button("Evaluate", type="primary"):
            return None
    try:
        return (_plan(usable, chosen, attack_names, int(steps), int(restarts), loss, version, (float(sigma), mode),
                      unit, {"linf": linf_text, "l2": l2_text}, int(count), sanity), name.strip() or "evaluation",
                None if shards is None else int(shards))
    except ValueError as error:
        st.error(f"Cannot start this evaluation: {error}")
        return None


def _plan(usable, chosen, attack_names, steps, restarts, loss, version, smoothing, unit, grids, count,
          sanity) -> plans.Plan:
    if not chosen:
        raise ValueError("choose at least one model")
    datasets = {usable[k].card["dataset"] for k in chosen}
    if len(datasets) > 1:
        raise ValueError(f"the chosen models are for different datasets ({', '.join(sorted(datasets))}): "
                         "evaluate one dataset at a time")
    if not 1 <= steps <= 1000 or not 1 <= restarts <= 100:
        raise ValueError("steps must lie in 1..1000 and restarts in 1..100")
    refs = _attack_refs(attack_names, steps, restarts, loss, version, smoothing)
    norms = {ref.norm for ref in refs}
    eps = {norm: [parse_eps(part, unit) for part in grids[norm].split(",") if part.strip()] for norm in norms}
    models = [plans.ModelRef(usable[k].label, str(usable[k].path.resolve()), usable[k].run_id) for k in chosen]
    plan = plans.Plan(tuple(models), tuple(refs), eps, dataset=datasets.pop(), count=count, sanity=sanity)
    plan.check()
    return plan
