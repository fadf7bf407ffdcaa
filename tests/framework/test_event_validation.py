"""The flattened event schema accepts and refuses what event-model's own schema does."""

from __future__ import annotations

import copy

import event_model
import numpy as np
import pytest
from event_model import DocumentNames

from vegard.store.event_validation import flattened_event_schema

ORIGINAL = event_model.schemas[DocumentNames.event]
VALIDATOR = type(event_model.schema_validators[DocumentNames.event])

GOOD = {"uid": "u", "descriptor": "d", "seq_num": 1, "time": 1.5,
        "data": {"amplitude_pm": np.arange(64.0)}, "timestamps": {"amplitude_pm": 1.5},
        "filled": {}}


def variants() -> list[dict]:
    bad = []
    for key in GOOD:
        missing = copy.copy(GOOD)
        del missing[key]
        bad.append(missing)
    bad += [dict(GOOD, extra=1), dict(GOOD, seq_num=1.5), dict(GOOD, uid=3),
            dict(GOOD, data=[1, 2]), dict(GOOD, filled={"x": 3}), dict(GOOD, time="now")]
    return [GOOD, dict(GOOD, filled={"x": False, "y": "datum"}), *bad]


@pytest.mark.parametrize("document", variants())
def test_the_flat_schema_judges_every_variant_as_the_original_does(document) -> None:
    original = VALIDATOR(schema=ORIGINAL).is_valid(document)
    flat = VALIDATOR(schema=flattened_event_schema(ORIGINAL)).is_valid(document)
    assert flat == original


def test_a_schema_of_another_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="not allOf"):
        flattened_event_schema(dict(ORIGINAL, unevaluatedProperties=True))


def test_the_flat_schema_never_formats_the_data(monkeypatch) -> None:
    class Loud(np.ndarray):
        def __repr__(self) -> str:
            raise AssertionError("repr of event data")

    document = dict(GOOD, data={"amplitude_pm": np.arange(64.0).view(Loud)})
    with pytest.raises(AssertionError, match="repr of event data"):
        VALIDATOR(schema=ORIGINAL).validate(document)
    VALIDATOR(schema=flattened_event_schema(ORIGINAL)).validate(document)

