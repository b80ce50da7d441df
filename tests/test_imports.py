"""The package's import graph: no module imports a private (``_``-prefixed) name of another, and no import cycle
(imports inside ``if TYPE_CHECKING:`` are for annotations only and do not count)."""

from __future__ import annotations

import ast
from pathlib import Path

GSM = Path(__file__).resolve().parent.parent / "gsm"


def _module_name(path: Path) -> str:
    parts = path.relative_to(GSM.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _imports() -> dict[str, list[tuple[str, list[str], bool]]]:
    """module → [(imported gsm module, names, at module level)]."""
    graph: dict[str, list[tuple[str, list[str], bool]]] = {}
    for path in sorted(GSM.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {id(n) for n in tree.body}
        name, edges = _module_name(path), []
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _runtime_nodes(tree):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level:
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    module = f"{base}.{module}" if module else base
                if module == "gsm" or module.startswith("gsm."):
                    edges.append((module, [a.name for a in node.names], id(node) in top))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("gsm"):
                        edges.append((alias.name, [], id(node) in top))
        graph[name] = edges
    return graph


def test_no_module_imports_a_private_name_of_another():
    graph = _imports()
    private = [f"{mod} imports {name} from {src}" for mod, edges in graph.items() for src, names, _ in edges
               for name in names if name.startswith("_") and not name.startswith("__") and src != mod]
    assert not private, private


def test_no_import_cycle_at_module_level():
    """Module-level imports only: an import inside a function runs late and cannot deadlock the import."""
    graph = _imports()
    modules = set(graph)

    def targets(mod: str) -> set[str]:
        out = set()
        for src, names, at_top in graph[mod]:
            if not at_top:
                continue
            for name in names or [""]:
                full = f"{src}.{name}" if name else src
                out.add(full if full in modules else src)
        return {t for t in out if t in modules and t != mod}

    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(mod: str, path: list[str]) -> None:
        state[mod] = 1
        for nxt in sorted(targets(mod)):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[mod] = 2

    for mod in sorted(modules):
        if mod not in state:
            visit(mod, [mod])
    # a package importing its own submodules is how packages work, not a cycle between modules
    cycles = [c for c in cycles if not all(m == c[0] or m.startswith(c[0] + ".") or c[0].startswith(m + ".") for m in c)]
    assert not cycles, cycles


def test_cli_does_not_import_the_trainer_at_module_level():
    """Imports run one way, cli → train: the trainer never imports the console entry points (its ``__main__``,
    ``python -m gsm.train``, is one of them and enters through gsm.cli.train like the others)."""
    graph = _imports()
    trainer = [mod for mod in graph if mod.startswith("gsm.train") and mod != "gsm.train.__main__"]
    assert trainer and not any(src.startswith("gsm.cli") for mod in trainer for src, _, _ in graph[mod])
    assert any(src == "gsm.cli" for src, _, _ in graph["gsm.train.__main__"])
    assert not any(src.startswith("gsm.train") and top for src, _, top in graph["gsm.cli"])


_HEAVY = ("torch", "torchvision", "pandas", "scipy", "matplotlib")


def _imported_by(code: str, cwd: Path) -> dict:
    """Run ``code`` in a fresh interpreter; returns {"heavy": the heavy libraries it imported, "exit": its code}."""
    import json
    import subprocess
    import sys

    probe = (f"import json, sys\nexit = 0\ntry:\n" + "".join(f"    {line}\n" for line in code.splitlines())
             + "except SystemExit as exc:\n    exit = exc.code\n"
             + f"print(json.dumps({{'heavy': [m for m in {_HEAVY!r} if m in sys.modules], 'exit': exit}}))\n")
    out = subprocess.run([sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_commands_that_need_no_torch_import_none(tmp_path):
    """gsm-tables status and --help, and train.py --help, answer from the config files and the runs folder:
    they import neither torch nor the table builders' pandas and scipy (docs/development.md has their times)."""
    (tmp_path / "runs").mkdir()
    status = _imported_by(f"from gsm.reproduce import main\nsys.exit(main(['status', 'table1', '--runs', "
                          f"{str(tmp_path / 'runs')!r}]))", tmp_path)
    assert status == {"heavy": [], "exit": 0}
    assert _imported_by("from gsm.reproduce import main\nmain(['--help'])", tmp_path) == {"heavy": [], "exit": 0}
    train_help = _imported_by("sys.argv = ['train.py', '--help']\nfrom gsm.cli import train\ntrain()", tmp_path)
    assert train_help == {"heavy": [], "exit": 0}


def test_the_tables_gsm_tables_offers_are_the_tables_it_can_build():
    from gsm import paper
    from gsm.reproduce import table_numbers
    from gsm.report import BUILDERS

    assert table_numbers() == paper.tables() == sorted(BUILDERS)


def test_a_bad_value_is_one_line_before_torch_is_imported(tmp_path):
    """head.sigma=-1 (and a number beyond float32) is refused by the command-line check, which composes the one run's
    config and checks every value before the trainer and torch are imported; exit 2, one line."""
    for arg, message in (("head.sigma=-1", "head.sigma must be"), ("head.mu=1e39", "float32")):
        out = _imported_by(f"sys.argv = ['train.py', {arg!r}]\nfrom gsm.cli import train\ntrain()", tmp_path)
        assert out == {"heavy": [], "exit": 2}, (arg, out)
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(GSM.parent / "train.py"), "head.sigma=-1"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.splitlines() == ["gsm: error: head.sigma must be a finite number > 0 (got -1)"]
