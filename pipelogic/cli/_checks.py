"""What `pipelogic validate` can tell about a component's ``src/main.py`` without running
any of it: the modules it imports at the top exist here, and the function it gives to
``run()`` takes as many inputs as component.yml declares and the special parameters its
options need (the rules the worker applies at start). Only the source is read (``ast``) and module specs are looked up
(``importlib.util.find_spec`` on top-level names, which runs no package code)."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

from pipelogic.component import ComponentSpec
from pipelogic.porting import read_requirements, requirement_notes
from pipelogic.worker._step import _SPECIAL

__all__ = ["static_problems"]


def static_problems(spec: ComponentSpec) -> tuple[list[str], list[str]]:
    """(errors, warnings) for ``spec``'s main.py, each ``file:line:col: ...``. A module
    that is missing here is an error, or a warning when src/requirements.txt exists (the
    component's image may install it)."""
    main = spec.main
    try:
        tree = ast.parse(main.read_bytes(), str(main))
    except (OSError, SyntaxError, ValueError):
        return [], spec.notes  # check_sources reports these
    errors: list[str] = []
    warnings: list[str] = []
    has_requirements = bool(read_requirements(main.parent / "requirements.txt"))
    for node, name in _top_imports(tree):
        if not _importable(name, main.parent):
            where = f"{main}:{node.lineno}:{node.col_offset + 1}"
            if has_requirements:
                warnings.append(
                    f"{where}: imports {name!r}, which is not installed here (fine if "
                    "src/requirements.txt installs it in the component's image)"
                )
            else:
                errors.append(
                    f"{where}: imports {name!r}, which is not installed here and src/requirements.txt "
                    "does not exist: install it, or list it there for the component's image"
                )
    errors += _arity(tree, main, len(spec.input_types), spec.name)
    return errors, spec.notes + requirement_notes(main.parent / "requirements.txt") + warnings


def _top_imports(tree: ast.Module) -> list[tuple[ast.stmt, str]]:
    """The absolute imports at the module's top level (not inside a try, a function or an
    if: those may be optional on purpose), as top-level package names."""
    out: list[tuple[ast.stmt, str]] = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            out += [(node, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node, node.module.split(".")[0]))
    return out


def _importable(name: str, src: Path) -> bool:
    if name in sys.builtin_module_names or (src / f"{name}.py").is_file() or (src / name).is_dir():
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _arity(tree: ast.Module, main: Path, n_inputs: int, component: str) -> list[str]:
    """The worker's start-up check of run()'s function, where main.py says plainly which
    function it runs: ``run(f, ...)`` at the top level, ``f`` a top-level ``def``."""
    defs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    problems = []
    for node in tree.body:
        call = node.value if isinstance(node, ast.Expr) else None
        if not (isinstance(call, ast.Call) and _is_run(call.func) and call.args):
            continue
        target = call.args[0]
        fn = defs.get(target.id) if isinstance(target, ast.Name) else None
        if fn is None:
            continue
        args = fn.args
        every = [*args.posonlyargs, *args.args]
        first_default = len(every) - len(args.defaults)  # defaults belong to the last ones
        positional = [i >= first_default for i, a in enumerate(every) if a.arg not in _SPECIAL]
        required = positional.count(False)
        where = f"{main}:{call.lineno}:{call.col_offset + 1}: component {component}: worker function {fn.name!r}"
        if args.vararg is None and not (required <= n_inputs <= len(positional)):
            problems.append(
                f"{where} takes {len(positional)} positional input(s) but component.yml declares "
                f"{n_inputs} input stream(s)"
            )
        # The special parameters, by name wherever they are (a **kwargs function gets them too).
        names = {a.arg for a in [*every, *args.kwonlyargs]}
        stateful = any(k.arg == "initial_state" for k in call.keywords)
        if stateful and "state" not in names and args.kwarg is None:
            problems.append(f"{where}: initial_state is given, so the function must take a `state` parameter")
        if "state" in names and not stateful and not any(k.arg is None for k in call.keywords):
            problems.append(f"{where} has a `state` parameter: pass initial_state=... to run()")
        if n_inputs == 0 and "virtual_input" not in names and args.kwarg is None:
            problems.append(f"{where}: a component without input streams must take a `virtual_input` parameter")
    return problems


def _is_run(func: ast.expr) -> bool:
    return (isinstance(func, ast.Name) and func.id == "run") or (
        isinstance(func, ast.Attribute)
        and func.attr == "run"
        and isinstance(func.value, (ast.Name, ast.Attribute))
        and ast.unparse(func.value).endswith("worker")
    )
