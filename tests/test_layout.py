"""The shape of `advcore`: no import circle, no Streamlit, few top-level modules, light modules light.

Imports are read from the source (every `import` statement, those inside functions too), so a
circle is caught even where a lazy import keeps Python from tripping over it today.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "advcore"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_modules(package: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(path, package.parent): path for path in sorted(package.rglob("*.py"))}


def imported_names(path: Path, root: Path = ROOT) -> list[str]:
    """Every module name an import statement in the file names (absolute, relative ones resolved)."""
    names = []
    own = module_name(path, root)
    own_package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = own_package.split(".")[:len(own_package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names.append(base)
            names += [f"{base}.{alias.name}" for alias in node.names]  # `from pkg import module`
    return names


def import_graph(modules: dict[str, Path], root: Path = ROOT) -> dict[str, set[str]]:
    """advcore module -> the advcore modules it imports (a name that is no module counts as its package)."""
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in imported_names(path, root):
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name and not name.startswith(imported + "."):
                targets.add(imported)  # a module may import its own package's other modules freely
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_planted_circle():
    graph = import_graph(source_modules())
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    planted = {**graph, "advcore.architectures": graph["advcore.architectures"] | {"advcore.models"}}
    cycle = find_cycle(planted)
    assert cycle[0] == cycle[-1] and set(cycle) == {"advcore.architectures", "advcore.models"}


def test_imports_are_read_from_source(tmp_path):
    package = tmp_path / "advcore" / "sub"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "one.py").write_text("def f():\n    from advcore.sub import two\n    from . import three\n")
    assert set(imported_names(package / "one.py", tmp_path)) >= {"advcore.sub.two", "advcore.sub.three"}


def test_advcore_has_no_import_circle():
    cycle = find_cycle(import_graph(source_modules()))
    assert cycle is None, "import circle: " + " -> ".join(cycle)


@pytest.mark.parametrize("name, path", sorted(source_modules().items()))
def test_advcore_never_imports_streamlit(name, path):
    streamlit = [imported for imported in imported_names(path) if imported.split(".")[0] == "streamlit"]
    assert not streamlit, f"{name} imports {streamlit[0]}; advcore must run without Streamlit"


def test_at_most_eight_modules_at_the_top():
    top = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(top) <= 8, top


def test_light_modules_import_no_tensorflow():
    """The pages list runs, configs and GANs (and the CLI parses its arguments) without TensorFlow."""
    light = ["advcore.architectures", "advcore.training.config", "advcore.storage.data", "advcore.storage.runs",
             "advcore.storage.files", "advcore.generative.study", "advcore.cli.main"]
    code = f"import sys\nfor name in {light!r}: __import__(name)\nprint('tensorflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
