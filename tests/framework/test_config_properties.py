"""Hostile input to the profile and protocol loaders (property-based).

Whatever a file holds, loading it gives a validated model or a `ConfigError` whose
message names the file: a scientist never sees a traceback for a bad file.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from vegard.config.errors import ConfigError
from vegard.config.profiles import Profile, load_profile
from vegard.config.protocols import load_protocol, protocol_models
from vegard.registry import instrument_kinds

REPOSITORY = Path(__file__).resolve().parents[2]
PROTOCOL_FILES = sorted((REPOSITORY / "configs/protocols").glob("*.yaml"))
PROFILE_FILES = sorted((REPOSITORY / "configs/profiles").glob("*.yaml"))
LOADERS = {"protocol": load_protocol, "profile": load_profile}
COUNTER = itertools.count()
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def field_names(model: type[BaseModel], seen: set[type] | None = None) -> set[str]:
    """Every field name of a model and the models nested in it (the loaders' vocabulary)."""
    seen = seen if seen is not None else set()
    if model in seen:
        return set()
    seen.add(model)
    names = set(model.model_fields)
    for field in model.model_fields.values():
        for candidate in _model_types(field.annotation):
            names |= field_names(candidate, seen)
    return names


def _model_types(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [t for arg in getattr(annotation, "__args__", ()) for t in _model_types(arg)]


PROTOCOL_MODELS = protocol_models()
KNOWN_FIELDS = sorted(
    set().union(*(field_names(m) for m in PROTOCOL_MODELS.values())) | field_names(Profile)
    | set().union(*(field_names(kind.settings) for kind in instrument_kinds().values()))
)
KNOWN_KINDS = sorted(PROTOCOL_MODELS)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.sampled_from(KNOWN_KINDS), st.sampled_from(["C/15", "C/0", "C/x"]),
    st.sampled_from(["sim", "", "nan", ".inf", "-1e400"]),
)
keys = st.one_of(st.sampled_from(KNOWN_FIELDS), st.text(max_size=10), st.integers())
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)
    ),
    max_leaves=20,
)
documents = st.dictionaries(keys, values, max_size=8)


def write(tmp_path: Path, content: str | bytes) -> Path:
    path = tmp_path / f"case-{next(COUNTER)}.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def assert_loads_or_refuses(loader_name: str, path: Path) -> None:
    """The property: a validated model, or a ConfigError naming the file; nothing else."""
    loader = LOADERS[loader_name]
    try:
        result = loader(path)
    except ConfigError as error:
        assert str(path) in str(error), str(error)
        assert str(error).strip(), "empty message"
    else:
        assert isinstance(result, BaseModel)


@SETTINGS
@given(document=documents, loader_name=st.sampled_from(sorted(LOADERS)))
def test_random_mappings_of_known_fields(tmp_path: Path, document: dict, loader_name: str):
    text = yaml.safe_dump(document, allow_unicode=True)
    assert_loads_or_refuses(loader_name, write(tmp_path, text))


@SETTINGS
@given(text=st.text(max_size=300), loader_name=st.sampled_from(sorted(LOADERS)))
def test_random_text(tmp_path: Path, text: str, loader_name: str):
    assert_loads_or_refuses(loader_name, write(tmp_path, text))


@SETTINGS
@given(data=st.binary(max_size=300), loader_name=st.sampled_from(sorted(LOADERS)))
def test_random_bytes(tmp_path: Path, data: bytes, loader_name: str):
    assert_loads_or_refuses(loader_name, write(tmp_path, data))


def _leaf_paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Paths (keys / indices) to every value of a parsed YAML document, containers too."""
    paths = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, child in node.items():
            paths += _leaf_paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            paths += _leaf_paths(child, (*prefix, index))
    return paths


def _replaced(document: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    head, *rest = path
    copy = dict(document) if isinstance(document, dict) else list(document)
    copy[head] = _replaced(document[head], tuple(rest), value)
    return copy


REAL_DOCUMENTS = {
    ("protocol", path.name): yaml.safe_load(path.read_text(encoding="utf-8"))
    for path in PROTOCOL_FILES
} | {
    ("profile", path.name): yaml.safe_load(path.read_text(encoding="utf-8"))
    for path in PROFILE_FILES
}


def test_real_files_load():
    """The mutation test below starts from files that load (else it proves little)."""
    assert len(PROTOCOL_FILES) >= 5
    for (loader_name, name), _ in REAL_DOCUMENTS.items():
        directory = REPOSITORY / "configs" / f"{loader_name}s"
        assert isinstance(LOADERS[loader_name](directory / name), BaseModel)


@SETTINGS
@given(
    which=st.sampled_from(sorted(REAL_DOCUMENTS)),
    choice=st.randoms(use_true_random=False),
    value=values,
)
def test_real_files_with_one_value_replaced(
    tmp_path: Path, which: tuple[str, str], choice: random.Random, value: Any
):
    loader_name, _ = which
    document = REAL_DOCUMENTS[which]
    path = choice.choice(_leaf_paths(document))
    mutated = _replaced(document, path, value)
    assert_loads_or_refuses(loader_name, write(tmp_path, yaml.safe_dump(mutated)))


@SETTINGS
@given(
    depth=st.integers(min_value=1, max_value=3000),
    opener=st.sampled_from(["[", "{a: ", "- ", "protocol: ["]),
    loader_name=st.sampled_from(sorted(LOADERS)),
)
def test_deep_nesting(tmp_path: Path, depth: int, opener: str, loader_name: str):
    """Nesting deeper than Python's recursion limit once escaped as RecursionError."""
    text = opener * depth if opener != "- " else "".join(
        "  " * level + "-\n" for level in range(min(depth, 400)))
    assert_loads_or_refuses(loader_name, write(tmp_path, text))


@SETTINGS
@given(
    digits=st.integers(min_value=1, max_value=6000),
    field=st.sampled_from(["protocol", "profile", "seed", "c_rate", "bins"]),
    loader_name=st.sampled_from(sorted(LOADERS)),
)
def test_long_numbers(tmp_path: Path, digits: int, field: str, loader_name: str):
    """An integer of more than 4300 digits once escaped as a plain ValueError."""
    text = f"protocol: esm_map\nprofile: p\n{field}: 9{'0' * (digits - 1)}\n"
    assert_loads_or_refuses(loader_name, write(tmp_path, text))
