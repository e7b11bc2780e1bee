"""Checks of a `.keras` file before Keras reads it, and the sandbox an untrusted one is loaded in first.

A `.keras` file is a zip archive: config.json (the architecture), metadata.json and model.weights.h5.
`check_archive` reads only the archive's directory and its config.json, bounded, without TensorFlow:
every member's declared size and their count (Keras unpacks the members to disk: a 4 MB file may
declare a 3.9 GiB config, or gigabytes of other members), the weights' size against the parameter
cap, and every class the config names (Keras's own and AdvLab's registered layers only: nothing else
is ever deserialised). `check_in_sandbox` then loads the file for real in a child process
(`python -m advcore check-model`, which limits its own address space and CPU time, by hand as well)
under a time limit, so a file that passes the static checks and still asks for gigabytes hurts only
that child; the server loads it only after.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import zipfile
from pathlib import Path

from advcore import devices
from advcore.jobs import processes

PARAMETERS_ENV = "ADVLAB_MAX_PARAMETERS"
DEFAULT_MAX_PARAMETERS = 50_000_000
MAX_CONFIG_BYTES = 2 * 2**20  # AdvLab's largest config is ~60 KB (densenet_bc)
WEIGHTS_OVERHEAD = 4 * 2**20  # HDF5 bookkeeping on top of 4 bytes per float32 parameter
SANDBOX_MEMORY = 5 * 2**30  # address space: importing TensorFlow alone reserves about 2.2 GB of it
SANDBOX_SECONDS = 120
ADVCORE_CLASSES = frozenset({"advcore>HalfHuberReLU"})  # AdvLab's registered layers (tests check the registry)
KERAS_MARKERS = frozenset({"__keras_tensor__", "__tensor__", "__numpy__", "__bytes__", "__ellipsis__", "__slice__",
                           "__typespec__"})  # plain values in Keras's own serialisation ("__lambda__" is code)
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
MAX_MEMBERS = 16  # a Keras 3 file has three (config.json, metadata.json, model.weights.h5)
MAX_OTHER_BYTES = 16 * 2**20  # metadata.json and any assets, in all


class ModelError(ValueError):
    """A model file or model AdvLab will not use, with the reason (`advcore.models` raises it too)."""


def max_parameters() -> int:
    """The parameter cap (default 50 M; $ADVLAB_MAX_PARAMETERS changes it)."""
    try:
        return max(1, int(os.environ.get(PARAMETERS_ENV, DEFAULT_MAX_PARAMETERS)))
    except ValueError:
        return DEFAULT_MAX_PARAMETERS


def check_archive(path: str | os.PathLike, limit: int | None = None) -> dict:
    """The file's config.json as an object, after every check that needs no TensorFlow; else a
    ModelError naming what is wrong."""
    path, limit = Path(path), limit or max_parameters()
    try:
        head = path.open("rb").read(8)
    except OSError as error:
        raise ModelError(f"{path.name}: cannot be read ({error.strerror})") from None
    if not head:
        raise ModelError(f"{path.name}: the file is empty")
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        if head.startswith(b"PK"):
            raise ModelError(f"{path.name}: the archive is truncated or damaged") from None
        if head.startswith(_HDF5_SIGNATURE):
            raise ModelError(f"{path.name}: a legacy HDF5 model renamed .keras; save it again in Keras 3 "
                             "with model.save('model.keras')") from None
        raise ModelError(f"{path.name}: not a .keras file (a Keras 3 model is a zip archive; this is "
                         "not one)") from None
    with archive:
        members = {info.filename: info for info in archive.infolist()}
        for required in ("config.json", "model.weights.h5"):
            if required not in members:
                raise ModelError(f"{path.name}: {required} is missing from the archive: not a Keras 3 model "
                                 "file")
        problem = _members_problem(archive.infolist(), limit)
        if problem:
            raise ModelError(f"{path.name}: {problem}")
        declared = members["config.json"].file_size
        if declared > MAX_CONFIG_BYTES:
            raise ModelError(f"{path.name}: its config.json declares {declared / 2**20:,.0f} MB (a model's "
                             f"takes kilobytes; the limit is {MAX_CONFIG_BYTES // 2**20} MB)")
        weights = members["model.weights.h5"].file_size
        if weights > 4 * limit + WEIGHTS_OVERHEAD:
            raise ModelError(f"{path.name}: its weights declare {weights / 2**20:,.0f} MB, more than "
                             f"{limit:,} parameters (the cap; ${PARAMETERS_ENV} raises it)")
        try:
            config = json.loads(archive.read("config.json"))
        except (zipfile.BadZipFile, OSError, EOFError):
            raise ModelError(f"{path.name}: the archive is truncated or damaged") from None
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise ModelError(f"{path.name}: its config.json is not valid JSON") from None
    if not isinstance(config, dict):
        raise ModelError(f"{path.name}: its config.json does not describe a model")
    problem = _unknown_class(config)
    if problem:
        raise ModelError(f"{path.name}: {problem}")
    return config


def _members_problem(infos: list[zipfile.ZipInfo], limit: int) -> str:
    """What is wrong with the archive's members as Keras would unpack them, in words; "" when nothing is."""
    if len(infos) > MAX_MEMBERS:
        return f"the archive holds {len(infos):,} members; a Keras 3 model file holds three (at most {MAX_MEMBERS})"
    if names := [info.filename for info in infos if info.filename.startswith("/") or ".." in info.filename.split("/")]:
        return f"the archive names a member outside itself ({names[0][:80]!r})"
    other = sum(info.file_size for info in infos if info.filename not in ("config.json", "model.weights.h5"))
    if other > MAX_OTHER_BYTES:
        return (f"the archive's other members declare {other / 2**20:,.0f} MB; a model's metadata takes "
                f"kilobytes (at most {MAX_OTHER_BYTES // 2**20} MB)")
    return ""


def _unknown_class(node, depth: int = 0) -> str:
    """The first class the config names that is neither Keras's nor AdvLab's registered one, in words."""
    if depth > 200:
        return "its config.json is nested too deeply"
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    if isinstance(node, dict) and "class_name" in node:
        name, module = node.get("class_name"), str(node.get("module") or "")
        if name in ("Lambda", "__lambda__") or name == "function" and not module.startswith("keras"):
            return ("it contains Python code (a Lambda layer or a custom function), which AdvLab never runs: "
                    "use built-in layers")
        registered = node.get("registered_name")
        keras_own = module == "keras" or module.startswith("keras.") or (not module and name in KERAS_MARKERS)
        if not keras_own and registered not in ADVCORE_CLASSES:
            return (f"unknown class `{registered or name}` (module {module or 'not given'}): AdvLab loads "
                    "Keras's built-in layers and its own only")
    for child in children:
        problem = _unknown_class(child, depth + 1)
        if problem:
            return problem
    return ""


def limit_resources() -> None:
    """The model check's own limits on address space and CPU time (`check-model` sets them before it
    imports TensorFlow, whether the app or a person runs it); a limit already lower stays."""
    for kind, wanted in ((resource.RLIMIT_AS, SANDBOX_MEMORY), (resource.RLIMIT_CPU, SANDBOX_SECONDS)):
        soft, hard = resource.getrlimit(kind)
        if hard != resource.RLIM_INFINITY:
            wanted = min(wanted, hard)
        if soft == resource.RLIM_INFINITY or soft > wanted:
            resource.setrlimit(kind, (wanted, hard))


OUT_OF_MEMORY = f"loading it runs out of the {SANDBOX_MEMORY // 2**30} GB of memory a model check may use " \
                "(far too many parameters?)"


def sandbox_command(path: Path, limit: int) -> dict:
    """The model check's child: `python -m advcore check-model`, on the CPU (a GPU is never held for it)."""
    return processes.command(["check-model", str(path), "--max-parameters", str(limit)], **devices.child_env(()),
                             TF_CPP_MIN_LOG_LEVEL="3")


def check_in_sandbox(path: str | os.PathLike, name: str | None = None, limit: int | None = None) -> dict:
    """Loads the file in a child process with limits on memory, CPU and time; returns what it found
    ({"parameters", "input_shape", "classes"}) or raises ModelError with the reason, naming the file
    as `name` (the user's file name)."""
    path, name, limit = Path(path), name or Path(path).name, limit or max_parameters()
    check_archive(path, limit)  # the cheap refusals need no child
    try:
        child = subprocess.run(**sandbox_command(path, limit), capture_output=True, text=True, timeout=SANDBOX_SECONDS)
    except subprocess.TimeoutExpired:
        raise ModelError(f"{name}: loading it took longer than {SANDBOX_SECONDS} s") from None
    lines = child.stdout.strip().splitlines()
    if child.returncode == 0 and lines:
        return json.loads(lines[-1])
    errors = [line for line in child.stderr.strip().splitlines() if ": error: " in line]
    if errors:
        message = errors[-1].split(": error: ", 1)[1].replace(str(path), name).replace(path.name, name)
        raise ModelError(message if message.startswith(name) else f"{name}: {message}")
    if child.returncode in (-signal.SIGABRT, -signal.SIGKILL, -signal.SIGSEGV) or "MemoryError" in child.stderr:
        raise ModelError(f"{name}: {OUT_OF_MEMORY}")
    raise ModelError(f"{name}: the model check failed (exit code {child.returncode})")
