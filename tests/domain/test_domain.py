"""The engine-free value types: vocabularies, selections, the JSON rule and the array hashing."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from calibreg.domain.hashing import ArrayDigest
from calibreg.domain.jsonable import dumps, jsonable
from calibreg.domain.quantum import QuantumSpec, Selection
from calibreg.domain.vocabulary import Level, Method, Vocabulary, Weights
from calibreg.errors import InputError

VOCABULARIES: list[type[Vocabulary]] = [Level, Method, Weights]


@given(st.sampled_from([m for v in VOCABULARIES for m in v]), st.randoms())
def test_vocabulary_parses_any_letter_case(member, rnd) -> None:
    text = "".join(c.upper() if rnd.random() < 0.5 else c.lower() for c in member.value)
    assert type(member).parse(f" {text} ") is member


@pytest.mark.parametrize("vocabulary", VOCABULARIES)
def test_vocabulary_refuses_an_unknown_name_listing_the_choices(vocabulary) -> None:
    with pytest.raises(InputError) as info:
        vocabulary.parse("median", source="--x")
    message = str(info.value)
    assert message.startswith("--x")
    for value in vocabulary.values():
        assert value in message


def test_quantum_level_is_canonical_whatever_its_case() -> None:
    assert QuantumSpec("I", "f", "amp").level == "AMP"
    with pytest.raises(InputError, match="level"):
        QuantumSpec("I", "f", "pixel")


def test_selection_key_ignores_order_and_case_of_the_value() -> None:
    a = Selection(field="observation_reason", value="Flat", exposures=(3, 1, 2))
    b = Selection(field="observation_reason", value="flat", exposures=(2, 3, 1, 1))
    assert a.key() == b.key()
    assert a.key() != Selection(field="observation_reason", value="dark").key()
    assert Selection().describe() == "all exposures"


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"field": "colour", "value": "red"}, "cannot select on"),
        ({"field": "observation_reason"}, "needs a value"),
        ({"value": "flat"}, "needs a field"),
    ],
)
def test_selection_refuses_incomplete_criteria(kwargs, reason) -> None:
    with pytest.raises(InputError, match=reason):
        Selection(**kwargs)


def test_json_rule_non_finite_is_null_and_integers_stay_exact() -> None:
    doc = {
        "nan": math.nan,
        "inf": np.float64("inf"),
        "big": 2**62 + 1,
        "np": np.int64(2**62 + 3),
        3: [np.float32(0.5), None],
    }
    out = json.loads(dumps(doc))
    assert out == {"nan": None, "inf": None, "big": 2**62 + 1, "np": 2**62 + 3, "3": [0.5, None]}
    assert jsonable(np.array([1.0, np.nan])) == [1.0, None]


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=20))
def test_json_rule_always_writes_strict_json(values) -> None:
    text = dumps({"v": values})
    assert "NaN" not in text and "Infinity" not in text
    back = json.loads(text)["v"]
    assert [v is None for v in back] == [not math.isfinite(v) for v in values]


def test_array_digest_folds_nan_bit_patterns_and_sees_order() -> None:
    quiet = np.array([1.0, np.nan])
    other_nan = np.array([1.0, np.frombuffer(b"\x01\x00\x00\x00\x00\x00\xf8\x7f", "<f8")[0]])
    assert np.isnan(other_nan[1])
    assert ArrayDigest().update_floats(quiet).hexdigest() == (
        ArrayDigest().update_floats(other_nan).hexdigest()
    )
    assert ArrayDigest().update_ints(np.array([1, 2])).hexdigest() != (
        ArrayDigest().update_ints(np.array([2, 1])).hexdigest()
    )
