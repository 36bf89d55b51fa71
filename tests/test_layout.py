"""The layout shows the pipeline (docs/architecture.md): stage packages, import layers, no circles.

import-linter's contracts live in pyproject.toml; `make test` runs `lint-imports` before pytest. These tests check
that the contracts really bite (a planted upward import breaks them), that no import circle is left among the
project's modules, and that the core library stays free of torch and Streamlit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("curation", "annotate_ui", "training")


def _lint_imports(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)} if pythonpath else dict(os.environ)
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


def test_import_contracts_are_kept() -> None:
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_upward_import_breaks_the_layers(tmp_path: Path) -> None:
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    kept = _lint_imports(tmp_path, pythonpath=tmp_path)
    assert kept.returncode == 0, kept.stdout + kept.stderr

    status = tmp_path / "curation" / "records" / "status.py"
    status.write_text(status.read_text() + "\nfrom curation.dataset import split  # noqa: E402,F401\n")
    broken = _lint_imports(tmp_path, pythonpath=tmp_path)
    assert broken.returncode != 0
    assert "curation.records is not allowed to import curation.dataset" in broken.stdout
    assert "curation.records.status -> curation.dataset.split" in broken.stdout


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (the import graph is a few hundred modules)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def test_strongly_connected_finds_a_planted_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert sorted(map(len, _strongly_connected(graph))) == [1, 3]


def test_no_import_circle_among_the_project_modules() -> None:
    imports = grimp.build_graph(*PACKAGES)
    graph = {module: {imported for imported in imports.find_modules_directly_imported_by(module)
                      if imported.split(".")[0] in PACKAGES}
             for module in imports.modules if module.split(".")[0] in PACKAGES}
    circles = [component for component in _strongly_connected(graph) if len(component) > 1]
    assert circles == []
    # the two circles the flat layout had are cut
    assert "curation.review.field_agreement" not in graph["curation.review.agreement"]
    assert "training.evaluate" not in graph["training.lora"]


def test_curation_top_level_holds_only_the_ground_and_the_stages() -> None:
    entries = {path.name for path in (REPO / "curation").iterdir() if path.name != "__pycache__"}
    assert entries == {"__init__.py", "errors.py", "rubric.py", "demo.py",
                       "records", "media", "review", "team", "dataset", "audit", "cli"}
    for stage in ("records", "media", "review", "team", "dataset", "audit", "cli"):
        init = (REPO / "curation" / stage / "__init__.py").read_text()
        assert init.startswith('"""') and "May import" in init
        assert "import " not in init.split('"""')[2], f"curation/{stage}/__init__.py should hold its docstring only"


def test_the_core_library_loads_neither_torch_nor_streamlit() -> None:
    script = (
        "import importlib, pkgutil, sys\n"
        "import curation\n"
        "for module in pkgutil.walk_packages(curation.__path__, 'curation.'):\n"
        "    if not module.name.endswith('__main__'):\n"
        "        importlib.import_module(module.name)\n"
        "print(sorted({name.split('.')[0] for name in sys.modules} & {'torch', 'streamlit', 'transformers'}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_part_that_cannot_load_leaves_its_verbs_out_with_a_line_in_help() -> None:
    # torch made unimportable for this process: the trainer's verbs go, the rest of the command stays
    script = (
        "import sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'torch':\n"
        "            raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "from curation.cli.main import main\n"
        "sys.exit(main(['--help']))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO,
                            env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert "training verbs unavailable" in result.stdout and "torch" in result.stdout
    commands = {line.split()[1] for line in result.stdout.splitlines() if line.startswith("│ ") and
                len(line.split()) > 2}
    assert {"export", "ui", "labelstudio"} <= commands
    assert "train" not in commands and "evaluate" not in commands


def test_every_verb_is_listed() -> None:
    from typer.main import get_command

    from curation.cli.main import app

    names = set(get_command(app).commands)
    assert names == {"init", "ingest", "status", "assign", "import-annotations", "resolve", "sample", "agree",
                     "ui", "demo", "split", "export", "budget", "audit", "train", "evaluate",
                     "check", "backup", "clips", "rubric", "users", "labelstudio"}
