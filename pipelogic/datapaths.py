"""Where a pipeline may read and write: its data paths stay in the pipeline's folder
unless pipeline.yml lists other folders under ``allow_paths_outside`` (issue 29).

A data path is a file source's or sink's ``path:``, the ``dead_letter:`` of a vertex that
skips errors, and each ``files:`` slot a component reads. A component's own ``path:`` (its
folder) is code, not data, and is not checked here. Plain code: no file is opened.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelogic.files import bound_path
from pipelogic.limits import preview

if TYPE_CHECKING:
    from pipelogic._yamlfile import Problems
    from pipelogic.pipeline import Vertex

__all__ = ["check_data_paths", "data_paths"]


def data_paths(vertices: dict[str, Vertex]) -> Iterator[tuple[list[Any], str]]:
    """Each data path as written in pipeline.yml, with its key (``components.V.path``...)."""
    for v in vertices.values():
        key: list[Any] = ["components", v.name]
        if v.component is None:
            if v.builtin in ("jsonl", "msgpack") and isinstance(v.params.get("path"), str):
                yield [*key, "path"], v.params["path"]
            continue
        if v.on_error == "skip" and isinstance(v.params.get("dead_letter"), str):
            yield [*key, "dead_letter"], v.params["dead_letter"]
        files = v.params.get("files")
        if isinstance(files, dict):
            for slot in v.component.file_slots.values():
                bound = bound_path(files.get(slot.name))
                if not slot.generated and bound is not None:
                    at = [*key, "files", slot.name] + (["path"] if isinstance(files[slot.name], dict) else [])
                    yield at, bound


def check_data_paths(data: dict[str, Any], file: Path, vertices: dict[str, Vertex], problems: Problems) -> list[Path]:
    """Add a problem for each data path outside the pipeline's folder and the folders
    listed under ``allow_paths_outside`` (symlinks followed: a link in the folder that
    points out of it is outside; ``/`` cannot be listed). Returns the listed folders that
    are outside the pipeline's folder, resolved: ``validate``, ``up`` and ``compose`` print
    them, and ``compose`` mounts them."""
    home = file.parent.resolve()
    outside: list[Path] = []
    listed = data.get("allow_paths_outside")
    if listed is not None and not (isinstance(listed, list) and all(isinstance(x, str) for x in listed)):
        problems.add(["allow_paths_outside"], f"expected a list of folder paths, got {preview(listed)}", value=True)
        listed = []
    for i, entry in enumerate(listed or []):
        folder = (file.parent / entry).resolve()
        if folder == Path(folder.anchor):
            problems.add(
                ["allow_paths_outside", i],
                f"{entry}: the whole file system cannot be allowed; name the folder the pipeline reads or writes",
                value=True,
            )
        elif not folder.is_relative_to(home) and folder not in outside:
            outside.append(folder)
    for key, value in data_paths(vertices):
        target = (file.parent / value).resolve()
        if not (target.is_relative_to(home) or any(target.is_relative_to(o) for o in outside)):
            problems.add(
                key,
                f"{target} is outside the pipeline's folder {home}; keep it inside, or list its folder "
                "under allow_paths_outside: in pipeline.yml to allow it",
                value=True,
            )
    return outside
