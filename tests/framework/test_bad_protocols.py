"""A corpus of broken protocol files, each refused by `vegard run` before any command.

Every file in `bad_protocols/` is a copy of a shipped protocol with one defect and a first
line `# expect: <fragment>`. The profile points every device at a simulated lab served on
loopback, so a defect that slipped through would show up as commands in its logs. Cases
that cannot be committed sensibly (over 1 MB, not UTF-8) are written by the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from vegard.cli import main
from vegard.clock import InstrumentClock
from vegard.config.yaml_file import MAXIMUM_FILE_BYTES
from vegard.simulators.lab import SimulatedLab

REPOSITORY = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).resolve().parent / "bad_protocols"
SCPI_INSTRUMENTS = ("temperature_stage", "afm", "potentiostat", "area_detector")
EXPECT_PREFIX = "# expect: "


@dataclass(frozen=True)
class BadProtocol:
    name: str
    content: bytes
    expected: str


def corpus_cases() -> list[BadProtocol]:
    cases = []
    for path in sorted(CORPUS.glob("*.yaml")):
        content = path.read_bytes()
        first = content.decode("utf-8").splitlines()[0]
        assert first.startswith(EXPECT_PREFIX), f"{path.name}: no '# expect:' first line"
        cases.append(BadProtocol(path.name, content, first[len(EXPECT_PREFIX):].strip()))
    return cases


def generated_cases() -> list[BadProtocol]:
    """A file over the size limit (a real protocol padded with comments) and non-UTF-8 text."""
    real = (REPOSITORY / "configs/protocols/temperature_steps.yaml").read_bytes()
    padding = b"# " + b"x" * 78 + b"\n"
    huge = real + padding * (MAXIMUM_FILE_BYTES // len(padding) + 1)
    latin1 = real.replace(b"Cu2Mo6S8 crystal", b"Cu2Mo6S8 Kristall f\xfcr")
    return [
        BadProtocol("huge_file.yaml", huge, f"at most {MAXIMUM_FILE_BYTES} allowed"),
        BadProtocol("latin1_text.yaml", latin1, "not UTF-8 text"),
        BadProtocol("binary_garbage.yaml", bytes(range(256)) * 8, "not UTF-8 text"),
    ]


CASES = corpus_cases() + generated_cases()


def test_corpus_is_large_enough():
    assert len(corpus_cases()) >= 15


@pytest.fixture(scope="module")
def lab() -> Iterator[SimulatedLab]:
    """Every simulator, served on loopback: where a command would land if not refused."""
    with SimulatedLab(InstrumentClock(1000)) as served:
        yield served


@pytest.fixture(scope="module")
def profile(lab: SimulatedLab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `run` profile (real addresses: the served lab's) with limits narrower than rated,
    so the protocol-against-profile checks are exercised, not only the rated ranges."""
    address = lab.addresses
    text = f"""\
profile: bad-protocols-lab
clock:
  speedup: 1000
devices:
  temperature_stage:
    driver: lakeshore336
    address: "{address['temperature_stage']}"
    minimum_temperature_k: 200
    maximum_temperature_k: 390
  afm:
    driver: be_afm
    address: "{address['afm']}"
    maximum_bias_v: 5
    scan_range_nm: 20000
  potentiostat:
    driver: scpi_potentiostat
    address: "{address['potentiostat']}"
    maximum_current_a: 0.001
    maximum_voltage_v: 5.0
  diffractometer:
    driver: epics_motors
    address: "{address['diffractometer']}"
    sample_range_um: 100
  area_detector:
    driver: maxipix
    address: "{address['area_detector']}"
    maximum_exposure_s: 0.01
  stem:
    driver: nion_stem
    address: "{address['stem']}"
    dose_budget_e_per_nm2: 3.0e8
    maximum_exposure_ms: 1500
"""
    path = tmp_path_factory.mktemp("profile") / "lab.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def diffractometer_moves(lab: SimulatedLab) -> dict[str, int]:
    """Moves recorded per axis: the IOC keeps no command log, but every VAL put that moves
    an axis is recorded in its trajectory history (other puts leave no trace we can read)."""
    model = lab.models["diffractometer"]
    return {axis: len(model.ioc.history(axis).moves()) for axis in model.axes}


def test_shipped_protocols_are_accepted_up_to_the_checks(lab, profile):
    """Anchor: the profile itself is valid and lets the shipped protocols through the checks,
    so a refusal below is the defect's, not the profile's."""
    from vegard.config.profiles import load_profile
    from vegard.config.protocols import load_protocol
    from vegard.registry import bench_for, protocol_kind

    loaded = load_profile(profile)
    for path in sorted((REPOSITORY / "configs/protocols").glob("*.yaml")):
        protocol = load_protocol(path)
        if protocol.protocol == "esm_temperature_series":
            continue  # its 400 K step is above this profile's 390 K on purpose
        if protocol.protocol == "be_voltage_spectroscopy":
            continue  # its ±8 V sweep + 1 V AC is above this profile's 5 V tip limit
        if protocol.protocol == "forc_spectroscopy":
            continue  # its 5 V peak + 1 V AC is above this profile's 5 V tip limit
        protocol_kind(protocol).check(protocol, bench_for(protocol, loaded, str(profile)), path)


@pytest.mark.parametrize("case", CASES, ids=[case.name.removesuffix(".yaml") for case in CASES])
def test_bad_protocol_is_refused_before_any_command(
    case: BadProtocol, lab: SimulatedLab, profile: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
):
    protocol = tmp_path / case.name
    protocol.write_bytes(case.content)
    for name in SCPI_INSTRUMENTS:
        lab.instruments[name].clear_command_log()
    moves_before = diffractometer_moves(lab)

    code = main(["run", str(protocol), "--profile", str(profile), "--data-dir", str(tmp_path)])

    error = capsys.readouterr().err
    assert code == 2, error
    assert case.name in error, error
    assert case.expected in error, error
    assert "Traceback" not in error and "internal error" not in error
    for name in SCPI_INSTRUMENTS:
        assert lab.command_log(name) == [], name
    assert diffractometer_moves(lab) == moves_before
    assert not (tmp_path / "runs").exists()
