"""The grain-boundary plan on the simulated STEM (virtual clock): a camera that would
saturate makes the plan shorten the exposure, or refuse it; the beam ends blanked either way.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import vegard
from vegard.config.protocols import load_protocol
from vegard.kinds.protocols.eels_grain_boundary import settings_of
from vegard.plans.eels_grain_boundary import eels_grain_boundary

pytestmark = pytest.mark.slow

REPOSITORY = Path(__file__).resolve().parents[2]
PROTOCOL = REPOSITORY / "configs/protocols/eels_licoo2_grain_boundary.yaml"
PROFILE = REPOSITORY / "configs/profiles/sim.yaml"


def small(**changes):
    protocol = load_protocol(PROTOCOL)
    line = protocol.line.model_copy(update={"pixels": 11, "start_nm": (-5.0, 0.0),
                                            "end_nm": (5.0, 0.0)})
    aloof = protocol.aloof.model_copy(update={"spectra": 1})
    return protocol.model_copy(update={"line": line, "aloof": aloof, **changes})


def exposures_taken(data_dir: Path, uid: str) -> dict[str, float]:
    """Stream → the camera's exposure as configured when the stream began."""
    (documents,) = (data_dir / "runs").glob(f"{uid}*/documents.jsonl")
    taken = {}
    for line in documents.read_text().splitlines():
        entry = json.loads(line)
        if entry["name"] == "descriptor":
            camera = entry["doc"]["configuration"]["stem-camera"]["data"]
            taken[entry["doc"]["name"]] = camera["stem-camera-exposure_ms"]
    return taken


def test_a_zlp_that_would_saturate_shortens_the_exposure_and_the_beam_ends_blanked(tmp_path):
    protocol = small()
    with vegard.open_lab(PROFILE, devices=["stem"], data_dir=tmp_path,
                         simulator_overrides=["stem.camera_saturation_counts=2e6"]) as lab:
        result = lab.run_engine(eels_grain_boundary(lab.devices["stem"], settings_of(protocol)))
        assert result.exit_status == "success"
        assert lab.simulators.safe_state()["stem"]["beam_blanked"]
    taken = exposures_taken(tmp_path, result.run_start_uids[0])
    # the aloof ZLP (~5.8e6 counts in 1 s) must stay under 0.8 × 2e6: about a quarter
    assert taken["aloof"] < 0.3 * protocol.aloof.exposure_ms
    assert taken["aloof"] > 0.2 * protocol.aloof.exposure_ms
    assert taken["valence_loss"] <= protocol.valence_loss.exposure_ms


def test_refusing_a_saturating_exposure_fails_the_run_with_the_beam_blanked(tmp_path):
    protocol = small(saturation=small().saturation.model_copy(update={"action": "refuse"}))
    with vegard.open_lab(PROFILE, devices=["stem"], data_dir=tmp_path,
                         simulator_overrides=["stem.camera_saturation_counts=2e6"]) as lab:
        with pytest.raises(Exception, match=r"would reach .* counts in one channel"):
            lab.run_engine(eels_grain_boundary(lab.devices["stem"], settings_of(protocol)))
        assert lab.simulators.safe_state()["stem"]["beam_blanked"]
