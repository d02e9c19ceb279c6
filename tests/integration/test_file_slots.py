"""File slots as on the platform: `worker.file_schema` in component.yml, `files:` in
pipeline.yml, the path in the slot's `config_key` parameter; generated files in an output
folder."""

import json
import textwrap
from pathlib import Path

import pytest

from pipelogic.component import load_component
from pipelogic.errors import DefinitionError
from pipelogic.pipeline import load_pipeline
from tests.helpers import run_up

COMPONENT = """
    name: reader
    language: py
    categories: [demo]
    worker:
      input_type: Int64
      output_type: String
      config_schema:
        prefix: {type: String, default: "n"}
      file_schema:
        model:
          file_type: onnx | txt
          config_key: model_path
          is_optional: false
          tag: weights
          mutable: false
        labels:
          file_type: txt
          config_key: labels_path
          is_optional: true
      generated_file_schema:
        - name: report
          file_type: csv
          config_key: report_path
"""

MAIN = """
    from pipelogic.worker import config, run

    WEIGHTS = open(config.model_path).read().strip()       # read at start, as a model would be
    LABELS = config.labels_path                              # optional, not bound: None

    def f(x):
        with open(config.report_path, "a") as out:
            out.write(f"{x},{WEIGHTS}\\n")
        return f"{config.prefix}{x}:{WEIGHTS}:{LABELS}"

    run(f)
"""


def make(tmp_path: Path, yml: str = COMPONENT) -> Path:
    d = tmp_path / "reader"
    (d / "src").mkdir(parents=True)
    (d / "component.yml").write_text(textwrap.dedent(yml))
    (d / "src" / "main.py").write_text(textwrap.dedent(MAIN))
    (tmp_path / "weights.txt").write_text("w42\n")
    return d


def pipeline(tmp_path: Path, files: str = "{model: ./weights.txt}") -> Path:
    f = tmp_path / "pipeline.yml"
    f.write_text(
        textwrap.dedent(f"""
        name: slots
        components:
          n: {{source: sequence, count: 3}}
          reader: {{path: ./reader, files: {files}}}
          out: {{sink: jsonl, path: ./out.jsonl}}
        connections: [n -> reader, reader -> out]
    """)
    )
    return f


def test_a_bound_file_reaches_the_component_through_its_config_key(tmp_path, cli_env):
    make(tmp_path)
    pipeline(tmp_path)
    r = run_up(tmp_path, (tmp_path / "pipeline.yml").read_text(), cli_env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().split()] == [
        "n0:w42:None",
        "n1:w42:None",
        "n2:w42:None",
    ]
    # The generated file landed in the output folder beside the pipeline.
    report = tmp_path / "out" / "reader" / "report.csv"
    assert report.read_text().splitlines() == ["0,w42", "1,w42", "2,w42"]


def test_slots_are_checked_when_the_pipeline_loads(tmp_path):
    make(tmp_path)
    with pytest.raises(
        DefinitionError,
        match=r"components\.reader\.files: the required file slot 'model' "
        r"\(onnx \| txt\) of reader is not bound",
    ):
        load_pipeline(pipeline(tmp_path, "{}"))
    with pytest.raises(
        DefinitionError,
        match=r"components\.reader\.files\.modle: reader has no file slot 'modle'; "
        r"did you mean 'model'\?",
    ):
        load_pipeline(pipeline(tmp_path, "{model: ./weights.txt, modle: ./weights.txt}"))
    with pytest.raises(DefinitionError, match=r"components\.reader\.files\.model: .*nope\.onnx: no such file"):
        load_pipeline(pipeline(tmp_path, "{model: ./nope.onnx}"))
    (tmp_path / "w.bin").write_text("x")
    with pytest.raises(
        DefinitionError,
        match=r"components\.reader\.files\.model: .*w\.bin is a file of type bin \| "
        r"weights \(by its extension\); slot 'model' of reader takes onnx \| txt",
    ):
        load_pipeline(pipeline(tmp_path, "{model: ./w.bin}"))
    with pytest.raises(
        DefinitionError,
        match=r"components\.reader\.config\.model_path: model_path is the path of "
        r"file slot 'model'; bind the file under files:",
    ):
        f = pipeline(tmp_path)
        f.write_text(
            f.read_text().replace(
                "files: {model: ./weights.txt}", "files: {model: ./weights.txt}, config: {model_path: /x}"
            )
        )
        load_pipeline(f)


def test_a_config_key_may_not_also_be_a_declared_parameter(tmp_path):
    d = make(
        tmp_path, COMPONENT.replace('prefix: {type: String, default: "n"}', 'model_path: {type: String, default: "x"}')
    )
    with pytest.raises(
        DefinitionError,
        match=r"worker\.file_schema\.model\.config_key: 'model_path' is also declared "
        r"in config_schema",
    ):
        load_component(d)
    d2 = tmp_path / "bad"
    (d2 / "src").mkdir(parents=True)
    (d2 / "component.yml").write_text(
        textwrap.dedent("""
        name: bad
        worker:
          file_schema:
            model: {file_type: onnx, config_key: m, is_optionl: true}
    """)
    )
    with pytest.raises(
        DefinitionError,
        match=r"worker\.file_schema\.model\.is_optionl: unknown key 'is_optionl'; "
        r"did you mean 'is_optional'\?",
    ):
        load_component(d2)


def test_compose_mounts_bound_files_and_the_generated_folder(tmp_path):
    import yaml

    from pipelogic.containers import ComposeOptions, render_compose

    make(tmp_path)
    pl = load_pipeline(pipeline(tmp_path))
    doc = yaml.safe_load(render_compose(pl, tmp_path / "compose.yaml", ComposeOptions("img:1")))
    svc = doc["services"]["reader"]
    assert "./weights.txt:/files/model:ro" in svc["volumes"]
    assert "./out/reader:/generated" in svc["volumes"]
    assert svc["environment"]["PIPELOGIC_FILES_DIR"] == "/files"
    assert svc["environment"]["PIPELOGIC_GENERATED_DIR"] == "/generated"


# -- issue 24, item 4: the platform's file-type vocabulary, targets, generated names ----------

PLATFORM = """
    name: detector
    worker:
      input_type: Int64
      output_type: String
      file_schema:
        model: {file_type: weights, config_key: model_path}
        served: {file_type: onnx, config_key: served_model, target: triton, is_optional: true}
        notes: {file_type: text | markdown, config_key: notes_path, is_optional: true}
      generated_file_schema:
        report: {name: Evidence report, file_type: pdf, config_key: report_path}
        table: {name: Detections, file_type: excel, config_key: table_path}
"""


def test_file_types_are_the_platforms_names_and_a_binding_may_say_its_type(tmp_path):
    make(tmp_path, PLATFORM)
    for name in ("yolo.onnx", "yolo.pt", "model.safetensors", "net.engine", "blob.bin", "weights.dat", "NOTES.MD"):
        (tmp_path / name).write_text("x")
    for bound in (
        "./yolo.onnx",
        "./yolo.pt",
        "./model.safetensors",
        "./net.engine",
        "./blob.bin",
        "{path: ./weights.dat, type: weights}",
    ):
        pl = load_pipeline(pipeline(tmp_path, f"{{model: {bound}, notes: ./NOTES.MD}}"))
        cfg = pl.vertices["reader"].config
        assert cfg["model_path"].endswith(bound.split("/")[-1].rstrip("}").split(",")[0])
        assert cfg["notes_path"].endswith("NOTES.MD") and cfg["served_model"] is None
    # A generated file is named after its slot; `name` is a display name.
    assert cfg["report_path"].endswith("out/reader/report.pdf") and cfg["table_path"].endswith("out/reader/table.xlsx")
    with pytest.raises(
        DefinitionError,
        match=r"weights\.dat is a file of type dat \(by its extension\); slot "
        r"'model' of detector takes weights \(say its type",
    ):
        load_pipeline(pipeline(tmp_path, "{model: ./weights.dat}"))
    with pytest.raises(DefinitionError, match=r"files\.model\.typ: unknown key 'typ'; did you mean 'type'\?"):
        load_pipeline(pipeline(tmp_path, "{model: {path: ./weights.dat, typ: weights}}"))
    # A target: the config key holds the file's display name (its name, or the binding's).
    pl = load_pipeline(pipeline(tmp_path, "{model: ./yolo.pt, served: ./yolo.onnx}"))
    assert pl.vertices["reader"].config["served_model"] == "yolo.onnx"
    pl = load_pipeline(pipeline(tmp_path, "{model: ./yolo.pt, served: {path: ./yolo.onnx, name: YOLO v8}}"))
    assert pl.vertices["reader"].config["served_model"] == "YOLO v8"
    notes = load_component(tmp_path / "reader").notes
    assert any("files.served.target" not in n and "no triton runs here" in n for n in notes), notes


def test_a_mutable_slot_is_rebound_while_the_pipeline_runs_and_sync_reports_it(tmp_path, cli_env):
    import subprocess
    import sys

    from click.testing import CliRunner

    from pipelogic.cli import main
    from tests.helpers import BrokerProc, wait_until

    d = tmp_path / "reader"
    (d / "src").mkdir(parents=True)
    (d / "component.yml").write_text(
        textwrap.dedent("""\
        name: reader
        worker:
          input_type: Int64
          output_type: String
          file_schema:
            model: {file_type: weights, config_key: model_path, mutable: true}
        """)
    )
    (d / "src" / "main.py").write_text(
        textwrap.dedent("""\
        from pipelogic.worker import config, run

        def load():
            return open(config.model_path).read().strip()

        MODEL = [load()]

        def f(x):
            if "model_path" in config.sync():
                MODEL[0] = load()  # rebound: load the new weights
            return MODEL[0]

        run(f)
        """)
    )
    (tmp_path / "a.onnx").write_text("A")
    (tmp_path / "b.pt").write_text("B")
    (tmp_path / "p.yml").write_text(
        textwrap.dedent("""\
        name: live
        components:
          n: {source: sequence, count: 100000, rate: 200}
          reader: {path: ./reader, files: {model: ./a.onnx}}
          o: {sink: jsonl, path: ./out.jsonl}
        connections: [n -> reader, reader -> o]
        """)
    )
    broker = BrokerProc(tmp_path / "p.yml", cli_env)
    worker = subprocess.Popen(
        [sys.executable, "-m", "pipelogic", "worker", str(d)],
        env=dict(cli_env, PIPELOGIC_BROKER=broker.endpoint, PIPELOGIC_COMPONENT="reader"),
    )
    try:
        run = CliRunner(env={"PIPELOGIC_BROKER": broker.endpoint})
        out = tmp_path / "out.jsonl"
        wait_until(lambda: out.exists() and out.read_text().strip(), 30, "the first output")
        r = run.invoke(main, ["config", "set", "reader", "model_path=./b.pt"])
        assert r.exit_code == 0 and "applied by the worker" in r.output, r.output
        r = run.invoke(main, ["config", "set", "reader", "model_path=./p.yml"])
        assert r.exit_code != 0 and "slot 'model' takes weights" in r.output, r.output
        wait_until(lambda: '"B"' in out.read_text(), 30, "an output of the rebound file")
        got = [json.loads(x) for x in out.read_text().split()]
        assert got[0] == "A" and "B" in got and got[got.index("B") :] == ["B"] * (len(got) - got.index("B"))
    finally:
        worker.terminate()
        worker.wait(10)
        broker.stop()
