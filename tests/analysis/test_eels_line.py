"""The EELS line-scan callback on simulated runs: documents as bluesky records them, arrays in
HDF5, spectra from the STEM simulator (`MonochromatedStem`), the model's truth recovered.

The run: 20 aloof spectra of 4 s at 65 nm outside the vacuum edge, then per pass a HAADF
registration line and one line of 31 pixels at 0.5 nm across the 3 nm boundary at x = 0 —
vibrational (0.2 meV/channel, 8 s per pixel), valence loss (50 meV/channel, 50 ms), core loss
(100 meV/channel, 2 s). The plan scanned the line 1 nm further along x than the start
document planned (as a drift re-registration would), so pixel positions must come from the
descriptors' probe configuration.

Dose: 8 s at 20 pA is ≈8× the project's 1 s assumption (≈2.4·10⁵ LDO counts per grain pixel);
0.2 meV/channel keeps the ZLP below the camera's full well, raised to its 1.6·10⁷ limit. Beam
damage is switched off (budget 10¹⁶ e/nm²): the test is about the analysis, not radiolysis.
Measured over seeds 0–19 of this run (before the shift was also scaled to the boundary
plane): the pooled region's LDO shift minus the truth averaged over the same regions
(what the pooled shift measures: ≈1.4 of the 1.8 meV on the boundary plane) has mean
−0.004 meV, rms 0.15 meV, largest 0.35 meV, so the tolerance is 0.5 meV (the stated
stderr, median 0.15 meV, is ≈1.35× too small: pull std 1.35); significance ≥ 6.
Li:Co change within 0.015 of the same regions' truth (−0.19 … −0.25 against −0.27 on the
plane); t/λ 2.2 % low (the valence axis ends at 100 eV); boundary within 0.17 nm.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from event_model import compose_run

from vegard.analysis.eels_line import EelsLineAnalysis
from vegard.analysis.run_metadata import EelsLineMetadata, EelsPassMetadata
from vegard.clock import InstrumentClock
from vegard.instruments.hdf5_stream import Hdf5StreamWriter
from vegard.simulators.stem_eels_model import MonochromatedStem

DETECTOR = "stem"
FOV_NM = 400.0
PIXELS = 31
PLANNED_START_NM, PLANNED_END_NM = (-7.5, 20.0), (7.5, 20.0)
REGISTRATION_OFFSET_NM = 1.0
ALOOF_NM = (-185.0, 20.0)
ALOOF_SPECTRA, ALOOF_MS = 20, 4000.0
PASSES = {  # dispersion meV/channel, offset meV, exposure ms
    "vibrational": (0.2, -50.0, 8000.0),
    "valence_loss": (50.0, -2000.0, 50.0),
    "core_loss": (100.0, 30_000.0, 2000.0),
}
MODEL = {"damage_dose_budget_e_per_nm2": 1e16, "camera_saturation_counts": 1.6e7,
         "specimen_drift_nm_per_min": 0.0}
SEED = 3
SHIFT_TOLERANCE_MEV = 0.5
T0_S = 1.7e9
KEYS = {k: f"{DETECTOR}-camera-{k}" for k in ("spectra", "energy_axis_mev", "haadf_counts")}


class ManualClock(InstrumentClock):
    """Instrument time that moves only when the test says (as tests/simulators' clock)."""

    def __init__(self, start_s: float = T0_S) -> None:
        super().__init__(speedup=1.0, origin_s=start_s)
        self.time_s = start_s

    def now(self) -> float:
        return self.time_s


def fraction(nm: float) -> float:
    return nm / FOV_NM + 0.5


def metadata() -> EelsLineMetadata:
    return EelsLineMetadata(
        detector=DETECTOR, field_of_view_nm=FOV_NM, start_nm=PLANNED_START_NM,
        end_nm=PLANNED_END_NM, pixels=PIXELS, aloof_position_nm=ALOOF_NM,
        passes={name: EelsPassMetadata(dispersion_mev_per_channel=d, energy_offset_mev=o,
                                       exposure_ms=t) for name, (d, o, t) in PASSES.items()})


class RunRecorder:
    """Documents of one run as the RunEngine emits them: a descriptor per stream (with the
    probe's configuration), one HDF5 file per prepared acquisition (`Hdf5StreamWriter`, as
    the camera does), stream_resource/stream_datum before each event."""

    def __init__(self, directory: Path, model: MonochromatedStem, clock: ManualClock) -> None:
        self.directory, self.model, self.clock = directory, model, clock
        self.bundle = compose_run(metadata={**metadata().document(),
                                            "plan_name": "eels_grain_boundary"}, time=T0_S)
        self.documents: list[tuple[str, dict]] = [("start", self.bundle.start_doc)]

    def _probe_configuration(self) -> dict:
        line, s = self.model.settings.line, self.model.settings
        values = {"line_start_fraction": [line.start_x, line.start_y],
                  "line_end_fraction": [line.end_x, line.end_y], "line_pixels": line.pixels,
                  "field_of_view_nm": s.field_of_view_nm,
                  "position_fraction": [s.probe_x, s.probe_y]}
        data = {f"{DETECTOR}-probe-{k}": v for k, v in values.items()}
        keys = {k: {"source": "sim", "dtype": "array" if isinstance(v, list) else "number",
                    "shape": [len(v)] if isinstance(v, list) else []} for k, v in data.items()}
        return {f"{DETECTOR}-probe": {"data": data, "timestamps": dict.fromkeys(data, T0_S),
                                      "data_keys": keys}}

    def stream(self, name: str, acquisitions: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """One stream: its descriptor, then per acquisition (spectra, HAADF) the arrays and
        an event carrying the saturated channels."""
        pixels, channels = acquisitions[0][0].shape
        writer = Hdf5StreamWriter(self.directory, f"{DETECTOR}-camera-{name}", {
            KEYS["spectra"]: ((pixels, channels), np.float32),
            KEYS["energy_axis_mev"]: ((channels,), np.float64),
            KEYS["haadf_counts"]: ((pixels,), np.float32)}, source=f"{DETECTOR}-camera")
        saturated = f"{DETECTOR}-camera-saturated_channels"
        descriptor = self.bundle.compose_descriptor(
            name=name, configuration=self._probe_configuration(),
            data_keys={**writer.describe(),
                       saturated: {"source": "sim", "dtype": "array", "shape": [pixels]}})
        self.documents.append(("descriptor", descriptor.descriptor_doc))
        axis = self.model.energy_axis().centres_mev()
        for seq, (spectra, haadf) in enumerate(acquisitions, start=1):
            writer.append({KEYS["spectra"]: spectra, KEYS["energy_axis_mev"]: axis,
                           KEYS["haadf_counts"]: haadf})
            for doc_name, doc in writer.collect_stream_docs():
                doc = dict(doc)
                if doc_name == "stream_resource":
                    doc["run_start"] = self.bundle.start_doc["uid"]
                else:
                    doc["descriptor"] = descriptor.descriptor_doc["uid"]
                    doc["seq_nums"] = {"start": seq, "stop": seq + 1}
                self.documents.append((doc_name, doc))
            counts = np.count_nonzero(spectra >= MODEL["camera_saturation_counts"], axis=1)
            self.documents.append(("event", descriptor.compose_event(
                data={saturated: counts.tolist()}, timestamps={saturated: self.clock.now()},
                time=self.clock.now())))
        writer.close()

    def stop(self, exit_status: str) -> list[tuple[str, dict]]:
        self.documents.append(("stop", self.bundle.compose_stop(exit_status=exit_status,
                                                                time=self.clock.now())))
        return self.documents


def simulated_run(directory: Path, passes=tuple(PASSES), seed: int = SEED,
                  exit_status: str = "success") -> tuple[list[tuple[str, dict]], dict]:
    """Documents of a run through `passes` (fewer: a run that ended early) and the
    simulator's per-pixel truth of each pass."""
    clock = ManualClock()
    model = MonochromatedStem(clock, MODEL, seed=seed)
    model.set_field_of_view(FOV_NM)
    recorder = RunRecorder(directory, model, clock)

    def expose(line: bool) -> tuple[np.ndarray, np.ndarray]:
        model.set_beam_blanked(False)
        if line:
            spectra, haadf = model.acquire_line()
            clock.time_s += model.line_duration_s()
        else:
            spectra, haadf = model.acquire_point()[None, :], np.zeros(1, np.float32)
            clock.time_s += model.point_duration_s()
        model.set_beam_blanked(True)
        return spectra, haadf

    dispersion, offset, _ = PASSES["vibrational"]
    model.set_dispersion(dispersion)
    model.set_energy_offset(offset)
    model.set_exposure(ALOOF_MS)
    model.set_probe_position(fraction(ALOOF_NM[0]), fraction(ALOOF_NM[1]))
    recorder.stream("aloof", [expose(line=False) for _ in range(ALOOF_SPECTRA)])

    shift = REGISTRATION_OFFSET_NM
    model.set_line(fraction(PLANNED_START_NM[0] + shift), fraction(PLANNED_START_NM[1]),
                   fraction(PLANNED_END_NM[0] + shift), fraction(PLANNED_END_NM[1]), PIXELS)
    registration, truth = [], {}
    for name in passes:
        model.set_exposure(1.0)
        registration.append(expose(line=True))
        dispersion, offset, exposure = PASSES[name]
        model.set_dispersion(dispersion)
        model.set_energy_offset(offset)
        model.set_exposure(exposure)
        recorder.stream(name, [expose(line=True)])
        truth[name] = model.truth()
    if registration:
        recorder.stream("registration", registration)
    return recorder.stop(exit_status), truth


def analyse(documents, figures: Path | None = None, **options) -> EelsLineAnalysis:
    analysis = EelsLineAnalysis(None if figures is None else (lambda uid: figures), **options)
    for name, doc in documents:
        analysis(name, doc)
    return analysis


@pytest.fixture(scope="module")
def complete(tmp_path_factory):
    directory = tmp_path_factory.mktemp("eels_run")
    documents, truth = simulated_run(directory / "arrays")
    analysis = analyse(documents, figures=directory / "figures")
    return analysis.result, truth


def pooled_truth(values: np.ndarray, region: np.ndarray) -> tuple[float, float]:
    """Truth averaged as the pipeline pools it: the boundary region and the grains'."""
    grains = [np.mean(values[region == r]) for r in (0, 2) if np.any(region == r)]
    return float(np.mean(values[region == 1])), float(np.mean(grains))


def test_positions_come_from_the_line_actually_scanned(complete):
    result, truth = complete
    np.testing.assert_allclose(result["profiles"]["position_nm"],
                               truth["vibrational"]["scan_x_nm"], atol=1e-9)
    assert result["boundary_source"] == "li_to_co"
    assert result["boundary_position_nm"] == pytest.approx(0.0, abs=0.5)
    assert result["complete"] and result["passes_missing"] == []
    assert result["aloof_spectra"] == ALOOF_SPECTRA and result["registration_lines"] == 3


def test_ldo_boundary_shift_is_recovered(complete):
    result, truth = complete
    region = np.asarray(result["profiles"]["region"])
    boundary, grains = pooled_truth(truth["vibrational"]["ldo_centre_mev"], region)
    assert np.count_nonzero(region == 1) >= 5
    assert result["ldo_boundary_region_shift_mev"] == pytest.approx(
        boundary - grains, abs=SHIFT_TOLERANCE_MEV)
    shift = result["ldo_boundary_shift_mev"]  # on the boundary plane: the model's parameter
    assert shift == pytest.approx(1.8, abs=SHIFT_TOLERANCE_MEV)
    assert shift > result["ldo_boundary_region_shift_mev"]
    assert result["ldo_boundary_shift_significance"] > 3.0
    assert result["activation_energy_change_fraction"] == pytest.approx(
        2 * shift / result["ldo_centre_grain_a_mev"], rel=0.05)
    centre = np.asarray(result["profiles"]["ldo_centre_mev"], dtype=float)
    assert centre.shape == (PIXELS,) and np.isfinite(centre).all()


def test_li_to_co_change_is_recovered(complete):
    result, truth = complete
    region = np.asarray(result["profiles"]["region"])
    boundary, grains = pooled_truth(truth["core_loss"]["li_to_co"], region)
    change = result["li_to_co_boundary_change_fraction"]
    assert change < 0
    assert result["li_to_co_boundary_region_change_fraction"] == pytest.approx(
        boundary / grains - 1, abs=0.02)
    assert change == pytest.approx(-0.27, abs=0.05)  # the model's change on the plane
    li = np.asarray(result["profiles"]["li_to_co"], dtype=float)
    assert np.mean(li[(region == 0) | (region == 2)]) == pytest.approx(1.0, abs=0.01)


def test_thickness_is_recovered(complete):
    result, truth = complete
    expected = truth["valence_loss"]["thickness_t_over_lambda"]
    np.testing.assert_allclose(result["profiles"]["t_over_lambda"], expected, rtol=0.10)
    assert result["t_over_lambda_mean"] == pytest.approx(np.mean(expected), rel=0.10)


def test_paper_pipeline_and_figures_are_reported(complete):
    result, _ = complete
    paper = result["paper"]
    assert paper["ldo_boundary_shift_mev"] is not None
    assert 0.0 <= paper["ldo_centre_at_bound_fraction"] <= 1.0
    assert len(paper["profiles"]["ldo_centre_mev"]) == PIXELS
    assert any("FWHM" in w for w in paper["warnings"])
    for name, path in result["figures"].items():
        assert path is not None and Path(path).stat().st_size > 10_000, name
    assert set(result["profiles"]) >= {"position_nm", "ldo_centre_mev", "ldo_centre_stderr_mev",
                                       "polaritonic", "phononic", "t_over_lambda", "li_to_co"}
    json.dumps(result, allow_nan=False)


def test_a_run_that_ended_before_the_core_loss_pass_gives_a_partial_result(tmp_path):
    documents, truth = simulated_run(tmp_path / "arrays", passes=("vibrational", "valence_loss"),
                                     exit_status="abort")
    replayed = [(name, json.loads(json.dumps(doc))) for name, doc in documents]  # as stored
    result = analyse(replayed, run_paper=False).result
    assert not result["complete"] and result["passes_missing"] == ["core_loss"]
    assert any("core_loss" in w and "not recorded" in w for w in result["warnings"])
    assert result["exit_status"] == "abort"
    assert result["li_to_co_boundary_change_fraction"] is None
    assert result["profiles"]["li_to_co"] == [None] * PIXELS
    assert math.isfinite(result["ldo_boundary_shift_mev"])
    assert result["boundary_source"] == "phononic_intensity"
    np.testing.assert_allclose(result["profiles"]["t_over_lambda"],
                               truth["valence_loss"]["thickness_t_over_lambda"], rtol=0.10)
    json.dumps(result, allow_nan=False)


def test_a_run_with_only_the_aloof_spectra_reports_what_is_missing(tmp_path):
    documents, _ = simulated_run(tmp_path / "arrays", passes=(), exit_status="abort")
    result = analyse(documents).result
    assert result["passes_missing"] == list(PASSES)
    assert result["ldo_boundary_shift_mev"] is None and result["paper"] is None
    assert any("nothing to analyse" in w for w in result["warnings"])
    assert result["figures"] == dict.fromkeys(result["figures"])
    json.dumps(result, allow_nan=False)


def test_runs_of_other_kinds_are_ignored():
    analysis = EelsLineAnalysis()
    bundle = compose_run(metadata={"plan_name": "count"})
    analysis("start", bundle.start_doc)
    analysis("stop", bundle.compose_stop())
    assert analysis.result is None
