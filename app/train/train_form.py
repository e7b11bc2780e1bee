"""The Train page's form: presets, widgets for every config field, validation next to each section."""

from __future__ import annotations

import streamlit as st

from advcore.architectures import ACTIVATIONS, ARCHITECTURES, DENSENET_DEPTH, DENSENET_GROWTH
from advcore.storage.data import DATASETS
from advcore.storage.runs import RunError
from advcore.training.config import RMSE_METHODS, ConfigError, TrainConfig, config_kind, read_file
from app import generators, registry, state

PRESETS = {
    "Interleaved: 10 vanilla + 3 adversarial epochs, until stopped": {
        "mode": "adversarial", "method": "fgsm", "eps": 0.1, "schedule": "interleaved", "vanilla": 10,
        "adversarial": 3, "cycles": 0, "epochs": 10, "lr_schedule": "constant", "lr": 1e-3},
    "Fast adversarial training (FGSM, random start, one-cycle LR)": {
        "mode": "adversarial", "method": "fgsm_rs", "eps": 0.1, "schedule": "constant", "epochs": 10,
        "lr_schedule": "cyclic", "lr": 5e-3},
    "PGD adversarial training (7 steps)": {
        "mode": "adversarial", "method": "pgd", "eps": 0.1, "steps": 7, "schedule": "constant", "epochs": 10,
        "lr_schedule": "constant", "lr": 1e-3},
    "TRADES (beta 6, 10 steps), best epoch kept": {
        "mode": "adversarial", "method": "pgd", "eps": 0.1, "steps": 10, "objective": "trades", "beta": 6.0,
        "keep_best": True, "schedule": "constant", "epochs": 20, "lr_schedule": "cyclic", "lr": 3e-3},
    "PGD + adversarial weight perturbation (AWP)": {
        "mode": "adversarial", "method": "pgd", "eps": 0.1, "steps": 7, "awp": True, "awp_gamma": 5e-3,
        "keep_best": True, "schedule": "constant", "epochs": 20, "lr_schedule": "cyclic", "lr": 3e-3},
    "Clean + adversarial double batch": {
        "mode": "double", "method": "fgsm_rs", "eps": 0.1, "schedule": "constant", "epochs": 10,
        "lr_schedule": "constant", "lr": 1e-3, "weight": 1.0},
    "Vanilla (no adversarial training)": {
        "mode": "vanilla", "schedule": "constant", "epochs": 10, "lr_schedule": "constant", "lr": 1e-3},
}
DEFAULTS = {"name": "run", "dataset": "fashion_mnist", "train_size": 0, "validation_size": 5000,
            "architecture": "small_cnn", "width": 1, "mode": "adversarial", "weight": 1.0, "fraction": 0.5,
            "method": "pgd", "norm": "linf", "eps": 0.1, "eps_unit": "[0, 1]", "steps": 7, "step_size": 0.0,
            "schedule": "constant", "epochs": 10, "until_stopped": False, "vanilla": 10, "adversarial": 3,
            "cycles": 0, "optimizer": "adam", "lr": 1e-3, "lr_schedule": "constant", "batch_size": 128,
            "seed": 0, "augment": "none", "robust_size": 500, "generator": "", "gan_size": 0, "activation": "relu",
            "depth": DENSENET_DEPTH, "growth": DENSENET_GROWTH, "lipschitz": False, "zeta": 0.2, "weight_decay": 0.0,
            "milestones": "",
            "robust_eps": 0.0, "nesterov": True, "objective": "ce", "beta": 6.0, "awp": False, "awp_gamma": 5e-3,
            "keep_best": False}
OBJECTIVE_LABELS = {"ce": "CE", "trades": "TRADES", "mart": "MART"}
METHODS = ("pgd", "fgsm_rs", "fgsm", "ll_fgsm", "gan", "unrestricted", "rmse_ball", "l2_min")
STEPPED_METHODS = ("pgd", "unrestricted", *RMSE_METHODS)  # the methods whose steps the form sets
SECTIONS = ("data", "model", "training", "attack", "schedule", "optimizer")
KEY = "train_form."
RECIPES_DIR = registry.PROJECT_ROOT / "assets" / "recipes"


def values_from_config(content: dict) -> dict:
    """The form's values for a config: the inverse of `config_from_values` on what the form shows."""
    config = TrainConfig.from_dict(content)
    data, attack, schedule = config.data, config.attack, config.schedule
    return {"name": config.name, "dataset": data.dataset, "train_size": data.train_size or 0,
            "validation_size": DEFAULTS["validation_size"] if data.validation_size is None else data.validation_size,
            "augment": data.augment,
            "architecture": config.model.architecture, "width": config.model.width, "mode": config.mode,
            "weight": config.mix.weight, "fraction": config.mix.fraction, "method": attack.method, "norm": attack.norm,
            "eps": attack.eps, "eps_unit": "[0, 1]", "steps": attack.steps or DEFAULTS["steps"],
            "step_size": attack.step_size or 0.0, "schedule": schedule.kind,
            "epochs": schedule.epochs or DEFAULTS["epochs"], "until_stopped": schedule.total_epochs is None,
            "vanilla": schedule.vanilla_epochs, "adversarial": schedule.adversarial_epochs,
            "cycles": schedule.cycles or 0, "optimizer": config.optimizer.name, "lr": config.optimizer.learning_rate,
            "lr_schedule": config.lr_schedule.kind, "batch_size": config.batch_size, "seed": config.seed,
            "robust_size": config.validation.robust_size, "generator": config.generator or "",
            "gan_size": config.validation.gan_size, "activation": config.model.activation,
            "depth": config.model.depth or DEFAULTS["depth"], "growth": config.model.growth or DEFAULTS["growth"],
            "lipschitz": config.lipschitz.enabled, "zeta": config.lipschitz.zeta,
            "weight_decay": config.optimizer.weight_decay,
            "milestones": ",".join(map(str, config.lr_schedule.milestones)),
            "robust_eps": config.validation.eps or 0.0, "nesterov": config.optimizer.nesterov,
            "objective": config.objective.kind, "beta": config.objective.beta, "awp": config.awp.enabled,
            "awp_gamma": config.awp.gamma, "keep_best": config.validation.keep_best}


def generator_choices() -> dict[str, str]:
    """The folders of the GANs on offer, with their labels."""
    return {str(entry.folder): entry.label for entry in generators.list_generators(state.root())}


def presets() -> dict[str, dict]:
    """The built-in presets, the committed GPU recipes (assets/recipes) and the exact recipe of each
    bundled model (its committed config). A recipe that needs a GAN is offered on the command line
    only, where the GAN's folder is given."""
    recipes = {}
    for path in sorted(RECIPES_DIR.glob("*.json")):
        try:
            content = read_file(path)
            if config_kind(content) == "classifier":
                recipes[f"Recipe {path.stem} (GPU, seed settings)"] = values_from_config(content)
        except ConfigError:
            continue
    for run in registry.example_runs():
        try:
            recipes[f"Recipe of the bundled model {run.id!r}"] = values_from_config(run.training_config())
        except (RunError, ConfigError):
            continue  # a damaged bundled config is simply not offered
    return PRESETS | recipes


def _apply_preset() -> None:
    chosen = presets().get(st.session_state[KEY + "preset"], {})
    for field, value in (DEFAULTS | chosen).items():
        st.session_state[KEY + field] = value


def _init_state() -> None:
    for field, value in DEFAULTS.items():
        st.session_state.setdefault(KEY + field, value)


def _section_of(message: str) -> str:
    field = message.split(":", 1)[0]
    first = field.split(".", 1)[0]
    return {"mix": "training", "mode": "training", "lr_schedule": "optimizer", "batch_size": "optimizer",
            "seed": "optimizer", "validation": "training", "name": "data", "generator": "attack",
            "lipschitz": "training", "objective": "training", "awp": "training"}.get(first, first)


def _milestones(text: str) -> list:
    """The epochs typed as "170, 195"; anything that is not an integer is passed on for the check."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    return [int(part) if part.lstrip("-").isdigit() else part for part in parts]


def config_from_values(v: dict) -> dict:
    """The TrainConfig content the widget values describe (checked by TrainConfig.from_dict)."""
    eps = v["eps"] / 255 if v["eps_unit"] == "/255" else v["eps"]
    until = v["until_stopped"]
    schedule = {"kind": v["schedule"], "epochs": None if until else v["epochs"],
                "vanilla_epochs": v["vanilla"], "adversarial_epochs": v["adversarial"],
                "cycles": None if until or v["cycles"] == 0 else v["cycles"]}
    return {
        "name": v["name"], "mode": v["mode"], "batch_size": v["batch_size"], "seed": v["seed"],
        "data": {"dataset": v["dataset"], "train_size": v["train_size"] or None,
                 "validation_size": v["validation_size"], "augment": v["augment"]},
        "model": {"architecture": v["architecture"], "width": v["width"], "activation": v["activation"],
                  **({"depth": v["depth"], "growth": v["growth"]} if v["architecture"] == "densenet_bc" else {})},
        "attack": {"method": v["method"], "norm": v["norm"], "eps": eps,
                   "steps": v["steps"] if v["method"] in STEPPED_METHODS else None,
                   "step_size": v["step_size"] or None},
        "mix": {"weight": v["weight"], "fraction": v["fraction"]},
        "objective": {"kind": v["objective"], "beta": v["beta"]},
        "awp": {"enabled": v["awp"], "gamma": v["awp_gamma"]},
        "lipschitz": {"enabled": v["lipschitz"], "zeta": v["zeta"]},
        "schedule": schedule,
        "optimizer": {"name": v["optimizer"], "learning_rate": v["lr"], "weight_decay": v["weight_decay"],
                      "nesterov": v["nesterov"]},
        "lr_schedule": {"kind": v["lr_schedule"], "milestones": _milestones(v["milestones"])},
        "validation": {"robust_size": v["robust_size"], "eps": v["robust_eps"] or None, "gan_size": v["gan_size"],
                       "keep_best": v["keep_best"]},
        "generator": v["generator"] or None,
    }


def train_form(device: str) -> TrainConfig | None:
    """Draws the form; returns a validated config when Start was pressed and every field is valid."""
    _init_state()
    st.selectbox("Preset", ["Custom", *presets()], key=KEY + "preset", on_change=_apply_preset,
                 help="fills the form with a recipe; every field stays editable")
    st.caption(f"Training will run on: **{device}**")
    with st.form("train"):
        notes = {}
        st.markdown("**Data**")
        st.text_input("Run name", key=KEY + "name", max_chars=60)
        c1, c2, c3 = st.columns(3)
        c1.selectbox("Dataset", DATASETS, key=KEY + "dataset")
        c2.number_input("Training images (0 = all)", step=1000, key=KEY + "train_size")
        c3.number_input("Validation images (held out of training)", step=500, key=KEY + "validation_size",
                        help="taken from the training split by the seed and never trained on; the per-epoch "
                             "checks run on them, and training reads no test image (0: no validation)")
        notes["data"] = st.empty()
        st.markdown("**Model**")
        c1, c2, c3, c4 = st.columns(4)
        c1.selectbox("Architecture", ARCHITECTURES, key=KEY + "architecture",
                     help="woods_resnet44: seed 004's pre-activation ResNet-44 for CIFAR; densenet_bc: seed "
                          "001's DenseNet-BC")
        c2.number_input("Width", step=1, key=KEY + "width")
        c3.selectbox("Activation", ACTIVATIONS, key=KEY + "activation",
                     help="half_huber: seed 004's smooth ReLU (woods_resnet44 only)")
        c4.selectbox("Augmentation", ["none", "crop", "crop_flip"], key=KEY + "augment",
                     help="crop: random shifts (zero padding); crop_flip: also mirrors (CIFAR)")
        c1, c2, _, _ = st.columns(4)
        c1.number_input("DenseNet depth (densenet_bc)", step=6, key=KEY + "depth")
        c2.number_input("DenseNet growth (densenet_bc)", step=1, key=KEY + "growth")
        notes["model"] = st.empty()
        st.markdown("**Training mode**")
        c1, c2, c3 = st.columns(3)
        c1.selectbox("Mode", ["adversarial", "double", "split", "vanilla"], key=KEY + "mode",
                     help="adversarial: train on adversarial examples only; double: clean + adversarial "
                          "batch; split: a share of each batch adversarial")
        c2.number_input("Adversarial weight (lambda)", step=0.1, key=KEY + "weight")
        c3.number_input("Adversarial share (split)", step=0.05, key=KEY + "fraction")
        c1, c2, c3 = st.columns(3)
        c1.selectbox("Objective", list(OBJECTIVE_LABELS), key=KEY + "objective", format_func=OBJECTIVE_LABELS.get,
                     help="the loss of the adversarial examples. CE: cross-entropy on them (PGD-AT, Madry et "
                          "al.); TRADES: CE on the clean image + beta KL(f(x) || f(x')), x' maximising the KL "
                          "(needs method pgd); MART: boosted CE on x' + beta KL weighted by 1 - p_y(x)")
        c2.number_input("beta (TRADES, MART)", step=0.5, key=KEY + "beta",
                        help="weight of the KL term; 6 is the papers' value")
        c3.number_input("AWP gamma", step=1e-3, format="%.4f", key=KEY + "awp_gamma",
                        help="each kernel moves by gamma times its own norm")
        c1, c2 = st.columns(2)
        c1.checkbox("AWP", key=KEY + "awp",
                    help="adversarial weight perturbation (Wu et al. 2020): each adversarial step takes its "
                         "gradient at weights moved toward higher adversarial loss; about 1/(steps + 1) more time")
        c2.checkbox("Keep best epoch", key=KEY + "keep_best",
                    help="the run's model is its epoch of highest validation robust accuracy (robust overfitting, "
                         "Rice et al. 2020); history and checkpoints stay whole")
        c1, c2, _ = st.columns(3)
        c1.number_input("Robust-accuracy check images per epoch (0 = off)", step=100,
                        key=KEY + "robust_size")
        c2.number_input("Robust check eps (0 = training eps)", step=0.01, format="%.4f",
                        key=KEY + "robust_eps", help="PGD-10 in the attack's norm; an RMSE for rmse_ball and l2_min")
        c1, c2 = st.columns(2)
        c1.checkbox("Lipschitz penalty", key=KEY + "lipschitz",
                    help="seed 004, with an adaptive psi: psi * mean |ds/dx|^2 by double backprop, s a random "
                         "logit or the margin; with half_huber and split 0.5 these are the seed's robust additions")
        c2.number_input("Margin share zeta", step=0.05, key=KEY + "zeta",
                        help="share of samples whose margin, not a random logit, is smoothed")
        notes["training"] = st.empty()
        st.markdown("**Attack**")
        c1, c2, c3, c4 = st.columns(4)
        c1.selectbox("Method", METHODS, key=KEY + "method",
                     help="fgsm_rs: random start and step 1.25 eps (fast training); ll_fgsm: least-likely "
                          "class, eps drawn per batch up to eps; gan: GAN samples of the batch's classes; "
                          "unrestricted: latent-space examples against the current weights (eps bounds their "
                          "pixel noise, steps are latent steps); rmse_ball (seed 004, eps 0.01) and l2_min "
                          "(smallest flip within eps 0.1): eps is an RMSE, steps shrink linearly")
        c2.selectbox("Norm", ["linf", "l2"], key=KEY + "norm")
        c3.number_input("eps", step=0.01, format="%.4f", key=KEY + "eps")
        c4.radio("eps unit", ["[0, 1]", "/255"], key=KEY + "eps_unit", horizontal=True)
        c1, c2 = st.columns(2)
        c1.number_input("Steps (pgd, rmse_ball, l2_min; unrestricted: latent steps)", step=1, key=KEY + "steps")
        c2.number_input("Step size (0 = by method)", step=0.001, format="%.4f", key=KEY + "step_size")
        c1, c2 = st.columns(2)
        gans = generator_choices()
        c1.selectbox("GAN (for gan / unrestricted, and the GAN checks)", ["", *gans], key=KEY + "generator",
                     format_func=lambda folder: gans.get(folder, folder) if folder else "none")
        c2.number_input("GAN-check images per epoch (0 = off)", step=100, key=KEY + "gan_size",
                        help="accuracy on GAN samples and on unrestricted examples searched from them, each epoch")
        notes["attack"] = st.empty()
        st.markdown("**Schedule**")
        c1, c2, c3 = st.columns(3)
        c1.selectbox("Schedule", ["constant", "interleaved", "warmup"], key=KEY + "schedule",
                     help="interleaved: cycles of vanilla then adversarial epochs; warmup: vanilla epochs "
                          "first, adversarial after")
        c2.number_input("Epochs", step=1, key=KEY + "epochs")
        c3.checkbox("Until stopped", key=KEY + "until_stopped")
        c1, c2, c3 = st.columns(3)
        c1.number_input("Vanilla epochs per cycle / warm-up", step=1, key=KEY + "vanilla")
        c2.number_input("Adversarial epochs per cycle", step=1, key=KEY + "adversarial")
        c3.number_input("Cycles (0 = until stopped)", step=1, key=KEY + "cycles")
        notes["schedule"] = st.empty()
        st.markdown("**Optimiser**")
        c1, c2, c3, c4 = st.columns(4)
        c1.selectbox("Optimiser", ["adam", "sgd"], key=KEY + "optimizer")
        c2.number_input("Learning rate", step=1e-4, format="%.5f", key=KEY + "lr")
        c3.number_input("Weight decay (decoupled)", step=1e-4, format="%.5f", key=KEY + "weight_decay")
        c4.number_input("Batch size", step=1, key=KEY + "batch_size")
        c1, c2, c3, c4 = st.columns(4)
        c1.selectbox("LR schedule", ["constant", "step", "cyclic"], key=KEY + "lr_schedule",
                     help="step: times 0.1 at each milestone epoch; cyclic: one cycle up and down")
        c2.text_input("Milestones (step)", key=KEY + "milestones", placeholder="e.g. 170, 195")
        c3.checkbox("Nesterov momentum (sgd)", key=KEY + "nesterov")
        c4.number_input("Seed", step=1, key=KEY + "seed")
        notes["optimizer"] = st.empty()
        submitted = st.form_submit_button("Start training", type="primary")
    if not submitted:
        return None
    values = {field: st.session_state[KEY + field] for field in DEFAULTS}
    try:
        return TrainConfig.from_dict(config_from_values(values))
    except ConfigError as error:
        notes.get(_section_of(str(error)), notes["data"]).error(str(error), icon="⚠️")
        return None
