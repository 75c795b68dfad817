"""The Task framework: Struct, Config, Task tree and timers, TaskMetadata (pipe_base JSON)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import ClassVar

import pytest

from calibreg.task import (
    ChoiceField,
    Config,
    ConfigurableField,
    Field,
    FieldValidationError,
    Struct,
    Task,
    TaskMetadata,
    timeMethod,
)

DM_54057 = Path(__file__).resolve().parents[1] / "data" / "metadata" / "DM-54057.json"


class LeafConfig(Config):
    factor = Field("A factor.", float, default=2.0)


class LeafTask(Task):
    ConfigClass = LeafConfig
    _DefaultName = "leaf"

    @timeMethod
    def run(self, x: float) -> Struct:
        self.metadata["lastInput"] = x
        return Struct(y=x * self.config.factor)


class HelperTask(Task):
    _DefaultName = "helper"


class TopConfig(Config):
    mode = ChoiceField("Mode.", str, allowed={"a": "A", "b": "B"}, default="a")
    leaf = ConfigurableField("The leaf.", target=LeafTask)

    def setDefaults(self) -> None:
        self.leaf.factor = 3.0


class TopTask(Task):
    ConfigClass = TopConfig
    _DefaultName = "top"
    _subtasks: ClassVar[dict[str, type[Task]]] = {"helper": HelperTask}

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.makeSubtask("leaf")
        self.makeSubtask("helper")


def test_struct_behaves_like_pipe_base() -> None:
    s = Struct(a=1, b="x")
    assert (s.a, s.b, len(s)) == (1, "x", 2)
    assert s.getDict() == {"a": 1, "b": "x"}
    s.getDict()["a"] = 5
    assert s.a == 1
    t = Struct(c=3)
    t.mergeItems(s, "a")
    assert t == Struct(c=3, a=1)
    assert s.copy() == s
    with pytest.raises(RuntimeError):
        Struct(getDict=1)
    with pytest.raises(RuntimeError):
        t.mergeItems(s, "a")


def test_task_tree_names_and_subtasks() -> None:
    top = TopTask()
    assert top.getName() == "top"
    assert top.getFullName() == "top"
    assert top.leaf.getFullName() == "top:leaf"
    assert top.leaf.getName() == "leaf"
    assert top.helper.getFullName() == "top:helper"
    assert set(top.getTaskDict()) == {"top", "top:leaf", "top:helper"}
    assert top.getTaskDict()["top:leaf"] is top.leaf
    assert top.leaf.config.factor == 3.0  # from the parent's setDefaults
    assert top.leaf.run(2.0).y == 6.0
    assert top.log.name == "calibreg.task.top"
    assert top.leaf.log.name == "calibreg.task.top.leaf"
    assert isinstance(top.log, logging.Logger)
    assert top.getResourceConfig() is None
    assert top.getSchemaCatalogs() == {}
    assert TopTask(name="other").getFullName() == "other"
    with pytest.raises(AttributeError, match="no subtask 'nope'"):
        top.makeSubtask("nope")
    with pytest.raises(RuntimeError, match="_DefaultName"):
        Task()
    with pytest.raises(RuntimeError, match="may not contain"):
        LeafTask(name="a:b")


def test_config_tree_to_dict_and_retarget() -> None:
    c = TopConfig()
    assert c.toDict() == {"mode": "a", "leaf": {"factor": 3.0}}
    c2 = TopConfig(leaf={"factor": 4})
    assert c2.leaf.factor == 4.0
    with pytest.raises(FieldValidationError):
        c.leaf = TopConfig()
    c.leaf.retarget(HelperTask)
    assert c.toDict() == {"mode": "a", "leaf": {}}
    c.freeze()
    with pytest.raises(FieldValidationError, match="frozen"):
        c.mode = "b"


def test_timer_records_lsst_keys_even_on_error() -> None:
    task = LeafTask()
    with task.timer("step"):
        sum(range(1000))
    with pytest.raises(ZeroDivisionError), task.timer("step"):
        1 / 0  # noqa: B018
    md = task.metadata
    for key in ("stepStartUtc", "stepStartCpuTime", "stepEndUtc", "stepEndCpuTime", "stepDuration"):
        assert len(md.getArray(key)) == 2, key
    assert all(d >= 0 for d in md.getArray("stepDuration"))
    assert md.getArray("stepStartUtc")[0].endswith("+00:00")
    assert isinstance(md.getScalar("stepEndCpuTime"), float)


def test_full_metadata_is_keyed_by_full_name_and_a_snapshot() -> None:
    top = TopTask()
    top.leaf.run(1.5)
    full = top.getFullMetadata()
    assert set(full.metadata) == {"top", "top:leaf", "top:helper"}
    assert full["top:leaf"]["lastInput"] == 1.5
    assert "runStartUtc" in full["top:leaf"]
    top.leaf.metadata["lastInput"] = 9.0
    assert full["top:leaf"]["lastInput"] == 1.5
    d = full.to_dict()
    assert set(d) == {"scalars", "arrays", "metadata"}
    assert d["metadata"]["top:leaf"]["scalars"]["lastInput"] == 1.5


def test_task_metadata_semantics() -> None:
    md = TaskMetadata()
    md["a"] = 1
    md["b.c"] = "x"
    md["arr"] = [1.0, 2.0]
    md.add("arr", 3.0)
    md.add("a", 2)  # a scalar becomes an array
    md.add("new", True)
    md["nested"] = {"k": 4}
    assert md["b.c"] == "x"
    assert md["b"]["c"] == "x"
    assert md.getArray("a") == [1, 2]
    assert md.getScalar("arr") == 3.0
    assert md["new"] == [True]
    assert "b.c" in md
    assert "b.z" not in md
    assert md.names() == {"a", "b", "b.c", "arr", "new", "nested", "nested.k"}
    assert md.paramNames(topLevelOnly=True) == {"a", "arr", "new"}
    md["a"] = "replaced"
    assert md.scalars["a"] == "replaced"
    assert "a" not in md.arrays
    del md["b.c"]
    assert "b.c" not in md
    with pytest.raises(ValueError, match="values must be"):
        md["bad"] = None
    with pytest.raises(ValueError, match="values must be"):
        md["bad"] = [object()]
    with pytest.raises(KeyError):
        md["x..y"] = 1
    assert md.get("missing", 7) == 7


def test_task_metadata_json_round_trip_with_nan() -> None:
    md = TaskMetadata()
    md["flatNorm:solve"] = TaskMetadata(scalars={"rms": math.nan, "n": 3, "ok": False})
    md.add("times", 1.5)
    md.add("times", math.inf)
    text = md.to_json()
    doc = json.loads(text)  # strict JSON
    assert doc["metadata"]["flatNorm:solve"]["scalars"]["rms"] is None
    assert doc["arrays"]["times"] == [1.5, None]
    back = TaskMetadata.from_json(text)
    assert math.isnan(back["flatNorm:solve"]["rms"])
    assert back["flatNorm:solve"]["ok"] is False
    assert back["flatNorm:solve"]["n"] == 3
    assert back.to_json() == text
    with pytest.raises(ValueError, match="unexpected key"):
        TaskMetadata.from_dict({"attempts": []})


def test_real_pipe_base_metadata_round_trips() -> None:
    inner = json.loads(DM_54057.read_text())["attempts"][0]
    md = TaskMetadata.from_dict(inner)
    assert set(md.metadata) >= {"calibrateImage", "calibrateImage:psf_measure_psf", "quantum"}
    psf = md["calibrateImage:psf_measure_psf"]
    assert math.isnan(psf["spatialFitChi2"])
    assert psf["numGoodStars"] == 268
    assert md["quantum.butler_metrics.n_get"] == 8
    assert md["quantum"].getScalar("endCpuTime") > md["quantum"].getScalar("startCpuTime")
    assert json.loads(md.to_json()) == inner
