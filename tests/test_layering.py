"""The house rules, checked on hil's own source (pure: the modules' import statements, read with ast).

- No import cycle, at module level or inside functions: a lower room never needs a higher one.
- No import inside a function, except where a heavy library loads only when its report is wanted.
- Each room imports only rooms below it (the flow: scenario -> machine -> session -> guest profile ->
  verdict -> report).
- No guest's name outside hil/guest/profiles: guest knowledge lives in profiles only.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

HIL = Path(__file__).resolve().parent.parent / "hil"
# A function-level import is allowed only for a stated reason: (module, imported module) -> why.
LAZY_IMPORTS = {
    ("hil.reports", "hil.reports.html"): "matplotlib and jinja2 load only when an HTML page is wanted",
    ("hil.session", "hil.guest.ssh"): "paramiko (50 ms) loads only when a test asks for SSH",
    ("hil.triage.guest_symbols", "hil.guest.ssh"): "paramiko loads only when symbols are fetched over SSH",
    ("hil.cli", "hil.bisect"): "numpy and the bisect engine load only for `hil bisect`",
    ("hil.cli", "hil.bisect_step"): "it imports hil.bisect",
    ("hil.cli", "hil.kept_ssh"): "paramiko loads only for hil exec, ssh and scp",
    ("hil.cli_run", "hil.kept_ssh"): "paramiko loads only once a VM is kept with SSH",
}
# Rooms and what they must never import (at run time; typing-only imports do not run).
FORBIDDEN = {
    "hil.results": ("hil.qemu", "hil.guest", "hil.devices", "hil.session", "hil.runner", "hil.judge", "hil.reports",
                    "hil.triage", "hil.runset", "hil.scenario"),
    "hil.qemu": ("hil.guest", "hil.devices", "hil.session", "hil.runner", "hil.judge", "hil.reports", "hil.triage",
                 "hil.runset", "hil.scenario", "hil.boot"),
    "hil.devices": ("hil.guest", "hil.session", "hil.runner", "hil.judge", "hil.reports", "hil.triage",
                    "hil.scenario", "hil.runset", "hil.boot"),
    "hil.guest": ("hil.session", "hil.runner", "hil.judge", "hil.reports", "hil.runset", "hil.cli", "hil.cli_run",
                  "hil.boot", "hil.scenario", "hil.steps"),
    "hil.triage": ("hil.runner", "hil.runset", "hil.judge", "hil.reports", "hil.cli", "hil.cli_run", "hil.boot",
                   "hil.steps", "hil.scenario"),
    "hil.reports": ("hil.runner", "hil.runset", "hil.session", "hil.judge", "hil.cli", "hil.cli_run", "hil.boot",
                    "hil.steps"),
    "hil.probes": ("hil.runner", "hil.session", "hil.guest", "hil.qemu"),
    "hil.runset": ("hil.cli", "hil.cli_run", "hil.tokio", "hil.reports"),
}  # fmt: skip
GUEST_NAMES = ("reference", "redox", "redox-kernel")
# Where those words are not a guest: (file, word) -> what it is there.
NOT_A_GUEST = {
    ("hil/cli.py", "reference"): "the `hil image reference` command",
    ("hil/image/reference.py", "reference"): "the reference image builder's own cache folder",
    ("hil/triage/parsers/__init__.py", "redox"): "a crash format (the one Redox kernels print)",
    ("hil/triage/parsers/redox.py", "redox"): "a crash format",
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in HIL.rglob("*.py"):
        name = ".".join(path.relative_to(HIL.parent).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> tuple[set[str], set[str]]:
    """(imports that run at module level, imports inside functions), as hil module names."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    typing_only = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(block.test) for node in ast.walk(block)}  # fmt: skip
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    top, inner = set(), set()
    for node in ast.walk(tree):
        if id(node) in typing_only or not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        targets = [alias.name for alias in node.names] if isinstance(node, ast.Import) else _from(node, package)
        resolved = {r for t in targets if t.startswith("hil") and (r := _resolve(t)) and r != module}
        (top if node in tree.body else inner).update(resolved)
    return top, inner


def _from(node: ast.ImportFrom, package: str) -> list[str]:
    base = node.module or ""
    if node.level:
        parts = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join([*parts, base] if base else parts)
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


GRAPH = {module: _imports(module) for module in MODULES}


def test_no_module_is_part_of_an_import_cycle() -> None:
    edges = {module: top | inner for module, (top, inner) in GRAPH.items()}
    cycles = []
    for start in edges:
        stack, seen = [(start, [start])], set()
        while stack:
            module, path = stack.pop()
            for target in edges[module]:
                if target == start:
                    cycles.append(" -> ".join([*path, start]))
                elif target not in seen:
                    seen.add(target)
                    stack.append((target, [*path, target]))
    assert not cycles, "\n".join(sorted(set(cycles))[:20])


def test_imports_inside_functions_have_a_stated_reason() -> None:
    unexplained = [(module, target) for module, (_, inner) in GRAPH.items() for target in inner
                   if (module, target) not in LAZY_IMPORTS]  # fmt: skip
    assert not unexplained


def test_rooms_import_only_rooms_below_them() -> None:
    wrong = defaultdict(list)
    for module, (top, inner) in GRAPH.items():
        for room, banned in FORBIDDEN.items():
            if module == room or module.startswith(f"{room}."):
                wrong[module] += [t for t in top | inner if any(t == b or t.startswith(f"{b}.") for b in banned)]
    assert not {module: targets for module, targets in wrong.items() if targets}


def test_no_guest_is_named_outside_its_profile() -> None:
    named = []
    for path in MODULES.values():
        relative = str(path.relative_to(HIL.parent))
        if relative.startswith("hil/guest/profiles/"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                word = node.value
                hit = word in GUEST_NAMES or (word.startswith("redox") and _is_startswith_argument(node, path))
                if hit and (relative, word) not in NOT_A_GUEST:
                    named.append(f"{relative}:{node.lineno}: {word!r}")
    assert not named, "\n".join(named)


def _is_startswith_argument(constant: ast.Constant, path: Path) -> bool:
    """`guest.startswith("redox...")`: a guest test by prefix."""
    for node in ast.walk(ast.parse(path.read_text())):
        called = isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "startswith"
        if called and any(isinstance(arg, ast.Constant) and arg.value == constant.value for arg in node.args):
            return True
    return False
