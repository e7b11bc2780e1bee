"""The Train page's form: presets, the fields that apply to the chosen setup, every problem next to its field."""

from __future__ import annotations

import streamlit as st

from advcore import devices
from advcore.architectures import ACTIVATIONS, ARCHITECTURES, BACKBONES, DENSENET_DEPTH, DENSENET_GROWTH
from advcore.jobs import gpus
from advcore.storage.data import DATASETS
from advcore.storage.runs import RunError
from advcore.training.config import (GENERATIVE_METHODS, PIXEL_STEP_METHODS, RMSE_METHODS, ConfigError, TrainConfig,
                                     config_kind, problems, read_file)
from app import generators, registry, state
from app.device import cluster_choice, gpu_offer
from app.train import folder_preview

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
    "Gaussian noise for randomized smoothing (sigma 0.25)": {
        "mode": "vanilla", "noise_sigma": 0.25, "noise_copies": 1, "consistency": 0.0, "consistency_entropy": 0.0,
        "schedule": "constant", "epochs": 30, "lr_schedule": "constant", "lr": 1e-3},
    "Consistency regularization for smoothing (sigma 0.25, 2 copies, lambda 10)": {
        "mode": "vanilla", "noise_sigma": 0.25, "noise_copies": 2, "consistency": 10.0, "consistency_entropy": 0.5,
        "schedule": "constant", "epochs": 30, "lr_schedule": "constant", "lr": 1e-3},
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
            "keep_best": False, "folder": "", "image_size": 0, "fit": "crop", "pretrained": False, "gpus": "default",
            "workers": 1, "noise_sigma": 0.0, "noise_copies": 1, "consistency": 0.0, "consistency_entropy": 0.0}
FOLDER = "image folder"  # the Dataset choice that shows the folder's fields
OBJECTIVE_LABELS = {"ce": "CE", "trades": "TRADES", "mart": "MART"}
METHODS = ("pgd", "fgsm_rs", "fgsm", "ll_fgsm", "gan", "unrestricted", "rmse_ball", "l2_min")
STEPPED_METHODS = ("pgd", "unrestricted", *RMSE_METHODS)  # the methods whose steps the form sets
KEY = "train_form."
STORE = KEY + "values"  # every field's value, shown or hidden
APPLIED = KEY + "applied-preset"  # the preset whose values the fields last received
SHOWN = KEY + "shown"  # whether the page's last run drew this form
FOLDER_DEFAULT = KEY + "folder-validation"  # the validation size the last chosen folder proposed
RECIPES_DIR = registry.PROJECT_ROOT / "assets" / "recipes"


def values_from_config(content: dict) -> dict:
    """The form's values for a config: the inverse of `config_from_values` on what the form shows."""
    config = TrainConfig.from_dict(content)
    data, attack, schedule = config.data, config.attack, config.schedule
    folder = data.dataset not in DATASETS
    return {"name": config.name, "dataset": FOLDER if folder else data.dataset, "train_size": data.train_size or 0,
            "folder": data.dataset if folder else "", "image_size": data.image_size or 0, "fit": data.fit,
            "pretrained": config.model.pretrained,
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
            "awp_gamma": config.awp.gamma, "keep_best": config.validation.keep_best,
            "gpus": "default" if config.distribute.gpus is None else config.distribute.gpus,
            "workers": config.distribute.workers, "noise_sigma": config.noise.sigma, "noise_copies": config.noise.copies,
            "consistency": config.noise.consistency, "consistency_entropy": config.noise.entropy}


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


def _adversarial(v: dict) -> bool:
    return v["mode"] != "vanilla"


def _densenet(v: dict) -> bool:
    return v["architecture"] == "densenet_bc"


def _folder(v: dict) -> bool:
    return v["dataset"] == FOLDER


def _interleaved(v: dict) -> bool:
    return v["schedule"] == "interleaved"


APPLIES = {  # field: when it means something; a field that does not apply is hidden and keeps its default
    "workers": lambda v: cluster_choice()[0] is not None,
    "folder": _folder, "image_size": _folder, "fit": _folder,
    "pretrained": lambda v: v["architecture"] in BACKBONES,
    "width": lambda v: not _densenet(v) and v["architecture"] not in BACKBONES, "activation": lambda v: v["architecture"] == "woods_resnet44",
    "depth": _densenet, "growth": _densenet,
    "weight": lambda v: v["mode"] in ("double", "split"), "fraction": lambda v: v["mode"] == "split",
    "objective": _adversarial, "beta": lambda v: _adversarial(v) and v["objective"] != "ce",
    "awp": _adversarial, "awp_gamma": lambda v: _adversarial(v) and v["awp"], "zeta": lambda v: v["lipschitz"],
    "method": _adversarial, "norm": lambda v: _adversarial(v) and v["method"] not in (*RMSE_METHODS, "gan"),
    "eps": lambda v: _adversarial(v) and v["method"] != "gan",
    "eps_unit": lambda v: _adversarial(v) and v["method"] not in (*RMSE_METHODS, "gan"),
    "steps": lambda v: _adversarial(v) and v["method"] in STEPPED_METHODS,
    "step_size": lambda v: _adversarial(v) and v["method"] in PIXEL_STEP_METHODS,
    "schedule": _adversarial, "epochs": lambda v: not _interleaved(v) and not v["until_stopped"],
    "until_stopped": lambda v: not _interleaved(v), "vanilla": lambda v: v["schedule"] in ("interleaved", "warmup"),
    "adversarial": _interleaved, "cycles": _interleaved,
    "milestones": lambda v: v["lr_schedule"] == "step", "nesterov": lambda v: v["optimizer"] == "sgd",
    "robust_eps": lambda v: v["robust_size"] > 0,
    "noise_copies": lambda v: v["noise_sigma"] > 0,
    "consistency": lambda v: v["noise_sigma"] > 0 and v["noise_copies"] > 1,
    "consistency_entropy": lambda v: v["noise_sigma"] > 0 and v["noise_copies"] > 1,
}
FIELD_OF = {  # a config field's dotted name: the form field that sets it (its problems show under it)
    "data.dataset": "dataset", "data.train_size": "train_size", "data.validation_size": "validation_size",
    "data.augment": "augment", "data.image_size": "image_size", "data.fit": "fit",
    "model.pretrained": "pretrained", "model.architecture": "architecture", "model.width": "width",
    "model.activation": "activation", "model.depth": "depth", "model.growth": "growth", "mix.weight": "weight",
    "mix.fraction": "fraction", "attack.method": "method", "attack.norm": "norm", "attack.eps": "eps",
    "attack.steps": "steps", "attack.step_size": "step_size", "schedule.kind": "schedule", "schedule.epochs": "epochs",
    "schedule.vanilla_epochs": "vanilla", "schedule.adversarial_epochs": "adversarial", "schedule.cycles": "cycles",
    "optimizer.name": "optimizer", "optimizer.learning_rate": "lr", "optimizer.weight_decay": "weight_decay",
    "lr_schedule.kind": "lr_schedule", "lr_schedule.milestones": "milestones", "validation.robust_size": "robust_size",
    "validation.eps": "robust_eps", "validation.gan_size": "gan_size", "validation.keep_best": "keep_best",
    "lipschitz.enabled": "lipschitz", "lipschitz.zeta": "zeta", "objective.kind": "objective",
    "objective.beta": "beta", "awp.enabled": "awp", "awp.gamma": "awp_gamma", "distribute.gpus": "gpus", "distribute.workers": "workers",
    "noise.sigma": "noise_sigma", "noise.copies": "noise_copies", "noise.consistency": "consistency",
    "noise.entropy": "consistency_entropy",
}


def effective_values(values: dict) -> dict:
    """The values with every field that does not apply (to the setup the other values choose) at its default."""
    effective = dict(values)
    while True:  # a hidden field may hide others (vanilla hides the schedule, which hides the cycles)
        hidden = {field: DEFAULTS[field] for field, applies in APPLIES.items()
                  if not applies(effective) and effective[field] != DEFAULTS[field]}
        if not hidden:
            return effective
        effective |= hidden


def field_problems(values: dict) -> dict[str, list[str]]:
    """Every problem of the values, by the form field it belongs to ("" for those of no single field)."""
    found: dict[str, list[str]] = {}
    effective = effective_values(values)
    typos = _milestone_problems(effective)
    checked = [message for message in problems(TrainConfig, config_from_values(effective))
               if not (typos and message.startswith("lr_schedule.milestones"))]  # the typo says it first
    for message in typos + checked:
        dotted = message.split(":", 1)[0].split("[", 1)[0]
        field = FIELD_OF.get(dotted, dotted if dotted in DEFAULTS else "")
        found.setdefault("folder" if field == "dataset" and _folder(effective) else field, []).append(message)
    if _folder(effective) and "folder" not in found:
        found.update(_folder_problems(effective))
    offered, holder, _, problem = gpu_offer(state.root())
    if problem:
        found["gpus"] = [problem]
    elif "gpus" not in found:
        try:
            gpus.check_request(config_from_values(effective), offered, holder)
        except devices.DeviceError as error:
            found["gpus"] = [str(error)]
    return found


def _folder_problems(values: dict) -> dict[str, list[str]]:
    """What the folder's listing says against the form: the folder unusable, or too few training images to
    hold the validation images out of (damaged files not counted, where the preview checked them)."""
    if problem := folder_preview.problem(values["folder"]):
        return {"folder": [f"data.dataset: {problem}"]}
    listing = folder_preview.listing(values["folder"])
    count = folder_preview.training_count(values["folder"])
    if "val" not in listing.splits and values["validation_size"] >= count:
        return {"validation_size": [f"data.validation_size: the folder's training split holds {count:,} images; "
                                    f"hold out fewer (10% is {max(1, round(count / 10)):,})"]}
    return {}


def _folder_validation() -> None:
    """When a folder is chosen, its validation images default to 10% of its training split (the built-in
    sets' 5,000 would be more than a small folder holds), unless the field holds a number typed by hand."""
    path = st.session_state[KEY + "folder"].strip()
    listing = folder_preview.listing(path) if path else None
    if listing is None or isinstance(listing, str) or "val" in listing.splits:
        return
    current = st.session_state.get(KEY + "validation_size", DEFAULTS["validation_size"])
    if current in (DEFAULTS["validation_size"], st.session_state.get(FOLDER_DEFAULT)):
        value = max(1, round(folder_preview.training_count(path) / 10))
        st.session_state[KEY + "validation_size"] = st.session_state[FOLDER_DEFAULT] = value


def _apply_values(values: dict) -> None:
    st.session_state[STORE] = DEFAULTS | values
    for field, value in st.session_state[STORE].items():
        st.session_state[KEY + field] = value


def _apply_preset() -> None:
    """Fills the fields with a newly chosen preset; Custom keeps them as they are. When the form comes back
    after the Runs view, the browser may still send the Preset box's old state, and Streamlit then calls
    this again with the same choice: only a new choice may overwrite what was typed."""
    chosen = st.session_state[KEY + "preset"]
    if chosen == st.session_state.get(APPLIED, "Custom"):
        return
    st.session_state[APPLIED] = chosen
    if chosen in presets():
        _apply_values(presets()[chosen])


def clone(content: dict) -> None:
    """Fills the form with a run's config (the page shows the form next)."""
    _apply_values(values_from_config(content))
    st.session_state[KEY + "preset"] = st.session_state[APPLIED] = "Custom"


def set_aside() -> None:
    """Called by the page when a run draws something else (the runs, the GAN form) instead of this form.
    The draft is taken from the widgets' states the browser sent with this run: the last run that drew
    the form may have been cut short by the next keystroke's rerun before it stored them (a fast typist's
    Start then came back to an older draft)."""
    if st.session_state.get(SHOWN):
        st.session_state[STORE] = current_values()
    st.session_state[SHOWN] = False


def _init_state() -> None:
    """Gives back the widgets Streamlit dropped while their field was hidden, and all of them from the draft
    when the form comes back from another view (the browser may then send stale or blank states for its
    widgets). A widget's key is written only then: written on every rerun, its value would be sent to the
    browser each time, and a number being typed while a rerun runs would be overwritten by the old one."""
    st.session_state.setdefault(STORE, dict(DEFAULTS))
    if not st.session_state.get(SHOWN):
        _apply_values(st.session_state[STORE])
        st.session_state[SHOWN] = True
    for field in DEFAULTS:
        if KEY + field not in st.session_state:
            st.session_state[KEY + field] = st.session_state[STORE][field]


def _milestone_parts(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _milestones(text: str) -> list[int]:
    """The epochs typed as "170, 195" (what is not a whole number is the form's own problem: see below)."""
    return [int(part) for part in _milestone_parts(text) if part.lstrip("-").isdigit()]


def _milestone_problems(values: dict) -> list[str]:
    """Typed text the config cannot hold; found here, so a typo hides none of the other problems."""
    if not APPLIES["milestones"](values):
        return []
    return [f"lr_schedule.milestones: {part!r} is not an epoch number (give whole epochs, e.g. 170, 195)"
            for part in _milestone_parts(values["milestones"]) if not part.lstrip("-").isdigit()]


def config_from_values(v: dict) -> dict:
    """The TrainConfig content the widget values describe (checked by TrainConfig.from_dict)."""
    eps = v["eps"] / 255 if v["eps_unit"] == "/255" else v["eps"]
    until = v["until_stopped"]
    schedule = {"kind": v["schedule"], "epochs": None if until else v["epochs"],
                "vanilla_epochs": v["vanilla"], "adversarial_epochs": v["adversarial"],
                "cycles": None if until or v["cycles"] == 0 else v["cycles"]}
    return {
        "name": v["name"], "mode": v["mode"], "batch_size": v["batch_size"], "seed": v["seed"],
        "data": {"dataset": v["folder"].strip() if _folder(v) else v["dataset"], "train_size": v["train_size"] or None,
                 "validation_size": v["validation_size"], "augment": v["augment"],
                 "image_size": v["image_size"] or None, "fit": v["fit"]},
        "model": {"architecture": v["architecture"], "width": v["width"], "activation": v["activation"],
                  "pretrained": v["pretrained"],
                  **({"depth": v["depth"], "growth": v["growth"]} if v["architecture"] == "densenet_bc" else {})},
        "attack": {"method": v["method"], "norm": v["norm"], "eps": eps,
                   "steps": v["steps"] if v["method"] in STEPPED_METHODS else None,
                   "step_size": v["step_size"] or None},
        "mix": {"weight": v["weight"], "fraction": v["fraction"]},
        "objective": {"kind": v["objective"], "beta": v["beta"]},
        "awp": {"enabled": v["awp"], "gamma": v["awp_gamma"]},
        "lipschitz": {"enabled": v["lipschitz"], "zeta": v["zeta"]},
        "noise": {"sigma": v["noise_sigma"], "copies": v["noise_copies"], "consistency": v["consistency"],
                  "entropy": v["consistency_entropy"]},
        "schedule": schedule,
        "optimizer": {"name": v["optimizer"], "learning_rate": v["lr"], "weight_decay": v["weight_decay"],
                      "nesterov": v["nesterov"]},
        "lr_schedule": {"kind": v["lr_schedule"], "milestones": _milestones(v["milestones"])},
        "validation": {"robust_size": v["robust_size"], "eps": v["robust_eps"] or None, "gan_size": v["gan_size"],
                       "keep_best": v["keep_best"]},
        "generator": v["generator"] or None,
        "distribute": {"gpus": None if v["gpus"] == "default" else v["gpus"], "workers": v["workers"]},
    }


def current_values() -> dict:
    """The fields' values; a hidden field's from the store (a button's callback runs before `_init_state`)."""
    kept = st.session_state.get(STORE, DEFAULTS)
    return {field: st.session_state[KEY + field] if KEY + field in st.session_state else kept[field]
            for field in DEFAULTS}


def _start(on_valid) -> None:
    """The Start button: queues the run when every field is valid, else marks that it was refused."""
    values = effective_values(current_values())
    st.session_state[KEY + "refused"] = bool(field_problems(values))
    if not st.session_state[KEY + "refused"]:
        on_valid(TrainConfig.from_dict(config_from_values(values)))


class _Fields:
    """Draws a field when it applies to the current values, with its problems right under it. Each field has
    a container of its own, drawn even while the field is hidden: a widget keeps its place in the page
    whatever the fields and problems above it do (a widget that moves is drawn anew by the browser, which
    then forgets what was typed into it)."""

    def __init__(self, values: dict, found: dict[str, list[str]]):
        self.values, self.found = values, found

    def __call__(self, widget, label: str, field: str, place=None, **options) -> None:
        box = (place or st).container()
        applies = APPLIES.get(field)
        if applies is not None and not applies(self.values):
            return
        getattr(box, widget)(label, key=KEY + field, **options)
        for message in self.found.get(field, []):
            box.error(message, icon="⚠️")


def train_form(device: str, on_valid) -> None:
    """The form, as wide as the page, in two columns of sections; Start calls `on_valid(config)` when
    every field is valid and otherwise lists every problem, each also next to its field."""
    _init_state()
    values = st.session_state[STORE] = current_values()
    found = field_problems(values)
    field = _Fields(effective_values(values), found)
    top, device_note = st.columns([2, 1])
    top.selectbox("Preset", ["Custom", *presets()], key=KEY + "preset", on_change=_apply_preset,
                  help="fills the form with a recipe; every field stays editable")
    device_note.caption(f"Training will run on: **{device}**")
    left, right = st.columns(2, gap="large")
    for column, sections in ((left, (_data_and_model, _training)), (right, (_attack, _schedule_optimiser_validation))):
        for section in sections:  # each in a container of its own: a section that comes or goes moves no other
            with column.container():
                section(field)
    general = found.get("", [])
    for message in general:
        st.error(message, icon="⚠️")
    if found and st.session_state.get(KEY + "refused"):
        count = sum(map(len, found.values()))
        st.warning(f"Not started: {count} problem{'s' if count > 1 else ''} to fix, each shown next to its field.")
    st.button("Start training", type="primary", on_click=_start, args=(on_valid,))


def _data_and_model(field: _Fields) -> None:
    st.markdown("**Data**")
    field("text_input", "Run name", "name", max_chars=60)
    field("selectbox", "Dataset", "dataset", options=[*DATASETS, FOLDER],
          help="a built-in set, or a folder of your own with one sub-folder of images per class")
    field("text_input", "Image folder", "folder", placeholder="/data/photos", on_change=_folder_validation,
          help="one sub-folder per class, images of any size (PNG, JPEG, BMP, GIF, WebP); train/, val/ and test/ "
               "sub-folders are kept, otherwise 20% of each class is set aside for testing")
    c1, c2 = st.columns(2)
    field("number_input", "Input size (px)", "image_size", c1, step=32,
          help="every image becomes a square of this side, e.g. 224 for the ImageNet backbones; 0: the size of "
               "the first image")
    field("selectbox", "Fit", "fit", c2, options=["crop", "pad", "stretch"],
          help="crop: scale the shorter side and cut the centre; pad: scale the longer side, pad with black; "
               "stretch: ignore the aspect ratio")
    values = field.values
    with st.container():
        if _folder(values) and values["folder"].strip() and "folder" not in field.found:
            folder_preview.show(values["folder"].strip(), values["image_size"], values["fit"])
    c1, c2 = st.columns(2)
    field("number_input", "Training images (0 = all)", "train_size", c1, step=1000)
    field("number_input", "Validation images", "validation_size", c2, step=500,
          help="held out of training: taken from the training split by the seed and never trained on; the "
               "per-epoch checks run on them, and training reads no test image (0: no validation)")
    field("selectbox", "Augmentation", "augment", options=["none", "crop", "crop_flip"],
          help="crop: random shifts (zero padding); crop_flip: also mirrors (CIFAR)")
    st.markdown("**Model**")
    field("selectbox", "Architecture", "architecture", options=ARCHITECTURES,
          help="woods_resnet44: seed 004's pre-activation ResNet-44 for CIFAR; densenet_bc: seed 001's DenseNet-BC; "
               "resnet50, efficientnet_b0, convnext_tiny, mobilenet_v2: Keras applications (inputs of 32 px or "
               "more) for fine-tuning")
    c1, c2 = st.columns(2)
    field("number_input", "Width", "width", c1, step=1, help="channel multiplier of the layers")
    field("checkbox", "ImageNet weights", "pretrained", c1,
          help="fine-tune from the backbone's ImageNet weights, read from the Keras cache (~/.keras/models); "
               "the backbone's input normalisation is part of the model, so attacks work on [0, 1] pixels")
    field("selectbox", "Activation", "activation", c2, options=ACTIVATIONS,
          help="half_huber: seed 004's smooth ReLU")
    field("number_input", "DenseNet depth", "depth", c1, step=6, help="6n + 4 layers")
    field("number_input", "DenseNet growth", "growth", c2, step=1, help="channels each layer adds")


def _training(field: _Fields) -> None:
    st.markdown("**Training**")
    field("selectbox", "Mode", "mode", options=["adversarial", "double", "split", "vanilla"],
          help="adversarial: train on adversarial examples only; double: clean + adversarial batch; split: a "
               "share of each batch adversarial")
    c1, c2 = st.columns(2)
    field("number_input", "Adversarial weight (lambda)", "weight", c1, step=0.1)
    field("number_input", "Adversarial share", "fraction", c2, step=0.05)
    c1, c2 = st.columns(2)
    field("selectbox", "Objective", "objective", c1, options=list(OBJECTIVE_LABELS), format_func=OBJECTIVE_LABELS.get,
          help="the loss of the adversarial examples. CE: cross-entropy on them (PGD-AT, Madry et al.); TRADES: CE "
               "on the clean image + beta KL(f(x) || f(x')), x' maximising the KL (needs method pgd); MART: "
               "boosted CE on x' + beta KL weighted by 1 - p_y(x)")
    field("number_input", "beta", "beta", c2, step=0.5, help="weight of the KL term; 6 is the papers' value")
    c1, c2 = st.columns(2, vertical_alignment="center")
    field("checkbox", "AWP", "awp", c1,
          help="adversarial weight perturbation (Wu et al. 2020): each adversarial step takes its gradient at "
               "weights moved toward higher adversarial loss; about 1/(steps + 1) more time")
    field("number_input", "AWP gamma", "awp_gamma", c2, step=1e-3, format="%.4f",
          help="each kernel moves by gamma times its own norm")
    c1, c2 = st.columns(2, vertical_alignment="center")
    field("checkbox", "Lipschitz penalty", "lipschitz", c1,
          help="seed 004, with an adaptive psi: psi * mean |ds/dx|^2 by double backprop, s a random logit or the "
               "margin; with half_huber and split 0.5 these are the seed's robust additions")
    field("number_input", "Margin share zeta", "zeta", c2, step=0.05,
          help="share of samples whose margin, not a random logit, is smoothed")
    c1, c2 = st.columns(2)
    field("number_input", "Noise sigma (smoothing)", "noise_sigma", c1, step=0.05, format="%.2f",
          help="train on inputs with Gaussian noise of this standard deviation (pixel units), for a model to "
               "certify by randomized smoothing at the same sigma; 0: no noise")
    field("number_input", "Noisy copies", "noise_copies", c2, step=1, help="copies of each input per step")
    c1, c2 = st.columns(2)
    field("number_input", "Consistency lambda", "consistency", c1, step=1.0,
          help="weight of the copies' KL to their mean (Jeong & Shin 2020: 5-20)")
    field("number_input", "Entropy eta", "consistency_entropy", c2, step=0.1,
          help="weight of the mean prediction's entropy (the paper: 0.5)")


def _attack(field: _Fields) -> None:
    if not _adversarial(field.values):
        return
    st.markdown("**Attack**")
    field("selectbox", "Method", "method", options=METHODS,
          help="fgsm_rs: random start and step 1.25 eps (fast training); ll_fgsm: least-likely class, eps drawn "
               "per batch up to eps; gan: GAN samples of the batch's classes; unrestricted: latent-space examples "
               "against the current weights (eps bounds their pixel noise, steps are latent steps); rmse_ball "
               "(seed 004, eps 0.01) and l2_min (smallest flip within eps 0.1): eps is an RMSE, steps shrink "
               "linearly")
    c1, c2 = st.columns(2)
    field("selectbox", "Norm", "norm", c1, options=["linf", "l2"])
    field("radio", "eps unit", "eps_unit", c2, options=["[0, 1]", "/255"], horizontal=True)
    rmse = field.values["method"] in RMSE_METHODS
    c1, c2 = st.columns(2)
    field("number_input", "eps (an RMSE)" if rmse else "eps", "eps", c1, step=0.01, format="%.4f")
    field("number_input", "Step size (0 = by method)", "step_size", c2, step=0.001, format="%.4f",
          help="default: eps (fgsm), 1.25 eps (fgsm_rs), 2.5 eps / steps (pgd)")
    c1, _ = st.columns(2)
    field("number_input", "Latent steps" if field.values["method"] == "unrestricted" else "Steps", "steps", c1,
          step=1)
    if field.values["method"] in GENERATIVE_METHODS or generator_choices():
        _gan_fields(field)


def _gan_fields(field: _Fields) -> None:
    gans = generator_choices()
    field("selectbox", "GAN (for gan / unrestricted, and the GAN checks)", "generator", options=["", *gans],
          format_func=lambda folder: gans.get(folder, folder) if folder else "none")


def _schedule_optimiser_validation(field: _Fields) -> None:
    st.markdown("**Schedule**")
    field("selectbox", "Schedule", "schedule", options=["constant", "interleaved", "warmup"],
          help="interleaved: cycles of vanilla then adversarial epochs; warmup: vanilla epochs first, "
               "adversarial after")
    c1, c2 = st.columns(2)
    field("number_input", "Epochs", "epochs", c1, step=1)
    field("checkbox", "Until stopped", "until_stopped", c2)
    warmup = field.values["schedule"] == "warmup"
    c1, c2, c3 = st.columns(3)
    field("number_input", "Warm-up epochs (vanilla)" if warmup else "Vanilla epochs per cycle", "vanilla", c1, step=1)
    field("number_input", "Adversarial epochs per cycle", "adversarial", c2, step=1)
    field("number_input", "Cycles (0 = until stopped)", "cycles", c3, step=1)
    st.markdown("**Optimiser**")
    c1, c2 = st.columns(2)
    field("selectbox", "Optimiser", "optimizer", c1, options=["adam", "sgd"])
    field("number_input", "Learning rate", "lr", c2, step=1e-4, format="%.5f")
    c1, c2 = st.columns(2)
    field("selectbox", "LR schedule", "lr_schedule", c1, options=["constant", "step", "cyclic"],
          help="step: times 0.1 at each milestone epoch; cyclic: one cycle up and down")
    field("text_input", "Milestones", "milestones", c2, placeholder="e.g. 170, 195")
    c1, c2 = st.columns(2)
    field("number_input", "Weight decay", "weight_decay", c1, step=1e-4, format="%.5f", help="decoupled")
    field("checkbox", "Nesterov momentum", "nesterov", c2)
    c1, c2 = st.columns(2)
    field("number_input", "Batch size", "batch_size", c1, step=1)
    field("number_input", "Seed", "seed", c2, step=1)
    _gpu_field(field)
    st.markdown("**Validation**")
    c1, c2 = st.columns(2)
    field("number_input", "Robust check images per epoch", "robust_size", c1, step=100,
          help="PGD-10 in the attack's norm on this many validation images each epoch (0: off)")
    field("number_input", "Robust check eps (0 = training eps)", "robust_eps", c2, step=0.01, format="%.4f",
          help="an RMSE for rmse_ball and l2_min")
    field("checkbox", "Keep best epoch", "keep_best", c1,
          help="the run's model is its epoch of highest validation robust accuracy (robust overfitting, Rice et "
               "al. 2020); history and checkpoints stay whole")
    if generator_choices():
        field("number_input", "GAN-check images per epoch", "gan_size", c2, step=100,
              help="accuracy on GAN samples and on unrestricted examples searched from them, each epoch (0: off)")


def _gpu_field(field: _Fields) -> None:
    """How many GPUs the run takes, from what the machine (or the cluster's largest node) has; a choice
    it cannot give (a draft or a preset from a larger one) goes back to the default."""
    offered, _, free, _ = gpu_offer(state.root())
    options = ["default", 0, *range(1, len(offered) + 1), *(["all"] if len(offered) > 1 else [])]
    if st.session_state.get(KEY + "gpus") not in options:
        st.session_state[KEY + "gpus"] = "default"
    names = {"default": f"default: {'1 GPU' if offered else 'the CPU'}", 0: "0: the CPU", "all": "all"}
    field("selectbox", "GPUs", "gpus", options=options, format_func=lambda choice: names.get(choice, str(choice)),
          help=f"{free}; the run gets its GPUs to itself and waits in the queue until they are free")
    field("number_input", "Workers", "workers", step=1,
          help="processes training the run together on the cluster's nodes (Ray Train, MultiWorkerMirroredStrategy), "
               "each with the GPUs above; every batch is split between them")
