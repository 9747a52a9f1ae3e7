"""The package's layers: lang <- engine <- explain <- render, the top-level modules above them.
No import runs back up a layer, no private name crosses a module, renderers take no knowledge
base, and every subpackage names its public surface."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ionm_logic"
LAYERS = {"lang": 0, "engine": 1, "explain": 2, "render": 3}
TOP = 4
# errors.py is the one top-level module every layer may raise from: it imports nothing of the
# package (checked below), so it is a foundation, not a layer above.
FOUNDATION = {"ionm_logic.errors"}


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.get(parts[1], TOP) if len(parts) > 1 else TOP


def imports(module: str, path: Path):
    """(imported module, imported names) of every import of the package in a module."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("ionm_logic"):
                yield target, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("ionm_logic"):
                    yield alias.name, []


ALL = list(modules())


@pytest.mark.parametrize("module, path", ALL, ids=[m for m, _p in ALL])
def test_no_import_runs_back_up_a_layer(module, path):
    mine = layer(module)
    for target, names in imports(module, path):
        for name in names or [None]:
            full = f"{target}.{name}" if name and (PACKAGE.parent / (target.replace(".", "/") + f"/{name}.py")).exists() \
                else target
            if full in FOUNDATION or target in FOUNDATION:
                continue
            assert layer(full) <= mine, f"{module} imports {full}, a layer above it"


def test_the_foundation_imports_nothing_of_the_package():
    for module, path in ALL:
        if module in FOUNDATION:
            assert list(imports(module, path)) == []


@pytest.mark.parametrize("module, path", ALL, ids=[m for m, _p in ALL])
def test_no_private_name_crosses_a_module(module, path):
    for target, names in imports(module, path):
        private = [n for n in names if n.startswith("_")]
        assert not private, f"{module} imports private {private} from {target}"


def test_the_anonymous_variable_prefix_is_spelled_in_one_module():
    spelled = [m for m, p in ALL if '"_#"' in p.read_text()]
    assert spelled == ["ionm_logic.lang.objects"]


@pytest.mark.parametrize("module, path", [(m, p) for m, p in ALL if layer(m) == LAYERS["render"]],
                         ids=[m for m, p in ALL if layer(m) == LAYERS["render"]])
def test_renderers_take_the_finished_result_and_no_knowledge_base(module, path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef):
            params = [a.arg for a in node.args.args + node.args.kwonlyargs]
            assert "kb" not in params and "case" not in params, f"{module}.{node.name}{params}"


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_every_subpackage_names_its_public_surface(package):
    doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text()))
    assert doc and "Public surface" in doc


def test_main_is_two_lines():
    assert len((PACKAGE / "__main__.py").read_text().strip().splitlines()) == 2
