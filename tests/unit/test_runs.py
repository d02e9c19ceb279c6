"""Finding a running pipeline's broker from its folder or file (pipelogic/runs.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pipelogic.errors import PipelogicError
from pipelogic.runs import (
    default_state_dir,
    find_broker,
    remove_address,
    resolve_broker,
    write_address,
)


def test_each_pipeline_file_has_its_own_state_directory(tmp_path):
    assert default_state_dir(tmp_path / "a.yml") == tmp_path.resolve() / ".pipelogic" / "a"
    assert default_state_dir(tmp_path / "b.yml") != default_state_dir(tmp_path / "a.yml")


def test_the_one_live_broker_of_a_folder_is_found_and_a_dead_ones_file_ignored(tmp_path, monkeypatch):
    monkeypatch.delenv("PIPELOGIC_BROKER", raising=False)
    assert find_broker(folder=tmp_path) is None
    write_address(default_state_dir(tmp_path / "a.yml"), "tcp://127.0.0.1:4001", tmp_path / "a.yml", "a")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = default_state_dir(tmp_path / "b.yml") / "broker.json"
    stale.parent.mkdir(parents=True)
    stale.write_text(json.dumps({"endpoint": "tcp://127.0.0.1:4002", "pid": int(dead.stdout), "pipeline": "b.yml"}))
    assert find_broker(folder=tmp_path) == "tcp://127.0.0.1:4001"
    assert find_broker(tmp_path / "a.yml") == "tcp://127.0.0.1:4001"
    with pytest.raises(PipelogicError, match="b.yml: this pipeline is not running here"):
        find_broker(tmp_path / "b.yml")
    monkeypatch.chdir(tmp_path)
    assert resolve_broker(None) == "tcp://127.0.0.1:4001"
    assert resolve_broker("tcp://x:1") == "tcp://x:1"  # --broker wins
    monkeypatch.setenv("PIPELOGIC_BROKER", "tcp://y:2")
    assert resolve_broker(None) == "tcp://y:2"  # then the environment


def test_several_live_pipelines_in_a_folder_must_be_named(tmp_path):
    for stem in ("a", "b"):
        write_address(
            default_state_dir(tmp_path / f"{stem}.yml"),
            f"tcp://127.0.0.1:400{len(stem)}",
            tmp_path / f"{stem}.yml",
            stem,
        )
    with pytest.raises(
        PipelogicError, match=r"2 pipelines run in this folder: a\.yml .*, b\.yml .*pipelogic status a\.yml"
    ):
        find_broker(folder=tmp_path)


def test_only_the_writer_removes_its_address_file(tmp_path):
    d = default_state_dir(tmp_path / "a.yml")
    f = write_address(d, "tcp://127.0.0.1:4001", tmp_path / "a.yml", "a")
    f.write_text(json.dumps({"endpoint": "tcp://127.0.0.1:4009", "pid": os.getppid(), "pipeline": "a.yml"}))
    remove_address(d)  # a newer broker's file: kept
    assert f.exists()
    write_address(d, "tcp://127.0.0.1:4001", tmp_path / "a.yml", "a")
    remove_address(d)
    assert not f.exists()
