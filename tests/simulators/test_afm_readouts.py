"""tr-KPFM and c-AFM on the emulated AFM controller: the wire commands, their limits, the
physics of each record against its exported truth, and the bias held after a record."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_afm_emulator import FAST, BlockClient

from vegard.analysis.iv_threshold import analyse_iv, cycle_mean
from vegard.clock import InstrumentClock
from vegard.simulators.afm_controller_emulator import AfmControllerEmulator
from vegard.simulators.afm_model import AtomicForceMicroscope
from vegard.simulators.cafm_iv import IvSweep, MemristiveContact
from vegard.simulators.scpi_server import ScpiServer
from vegard.simulators.trkpfm_relaxation import KpfmStep, SurfacePotentialRelaxation


@pytest.fixture
def afm():
    model = AtomicForceMicroscope(InstrumentClock(FAST), seed=5)
    with ScpiServer(AfmControllerEmulator(model)) as server:
        client = BlockClient(server.port)
        yield model, client
        client.socket.close()


# ---------------------------------------------------------------- tr-KPFM


def test_a_cpd_record_relaxes_as_its_truth_says_and_the_step_bias_stays_on(afm):
    model, client = afm
    client.send("SCAN:MOVE 1500,1500;BIAS:OUTP 1;KPFM:STEP 4,0.5,20,0.02,-1")
    assert client.query("KPFM:STEP?") == "4,0.5,20,0.02,-1"
    assert float(client.query("KPFM:TIME?")) == pytest.approx(20.5)
    started = model.clock.now()
    cpd = client.query_block("KPFM:CPD?", "<f8")
    assert model.clock.now() - started >= 20.5 and cpd.size == 1025
    truth = {k: v[0] for k, v in model.readouts.kpfm.truth().items()}
    p = model.parameters
    d_m = p["kpfm_interelectrode_distance_um"] * 1e-6
    assert truth["relaxation_time_s"] == pytest.approx(d_m**2 / truth[
        "diffusion_coefficient_m2_per_s"])
    assert truth["cpd_amplitude_v"] == pytest.approx(p["kpfm_screening_fraction"] * 5.0)
    u = (np.arange(cpd.size) - 25) * 0.02
    after = u > 0.1
    model_v = truth["cpd_offset_v"] + truth["cpd_amplitude_v"] * np.exp(
        -u[after] / truth["relaxation_time_s"])
    residual = cpd[after] - model_v
    assert abs(residual.mean()) < 1e-3 and residual.std() == pytest.approx(
        p["kpfm_cpd_noise_v"], rel=0.1)
    assert client.query("BIAS:DC?") == "4"  # held: the plan must unbias the tip


@pytest.mark.parametrize("step", ["11,1,10,0.02,0", "1,1,10,0.0001,0", "1,1,0.001,0.02,0",
                                  "1,1,10,0.02,-10.5"])
def test_a_bias_step_beyond_the_limits_is_refused_and_changes_nothing(afm, step):
    _, client = afm
    client.send(f"KPFM:STEP {step}")
    assert client.query("SYST:ERR?").startswith("-222,")
    assert client.query("KPFM:STEP?") == "0,1,10,0.02,0"


def test_relaxation_is_arrhenius_and_the_kpfm_loop_saturates_at_its_range():
    physics = SurfacePotentialRelaxation({"kpfm_feedback_range_v": 1.0,
                                          "kpfm_activation_energy_ev": 0.14}, seed=1)
    hot, cold = physics.relaxation_time_s(3, 350.0), physics.relaxation_time_s(3, 300.0)
    assert math.log(cold / hot) == pytest.approx(0.14 / 8.617333262e-5 * (1 / 300 - 1 / 350))
    cpd, _ = physics.record(KpfmStep(8.0, 0.1, 5.0, 0.02, 0.0), 3, 0.1, 300.0, None)
    assert cpd.max() == 1.0  # the nulling loop cannot follow beyond ±range


# ---------------------------------------------------------------- c-AFM


def test_an_iv_sweep_is_hysteretic_only_beyond_the_threshold(afm):
    model, client = afm
    client.send("SCAN:MOVE 1500,1500;BIAS:OUTP 1;CAFM:RANG 1e-8")
    lobes, thresholds = [], []
    for amplitude in (2.0, 5.0):  # V_th here ≈ 3 V
        client.send(f"CAFM:SWEEP {amplitude:g},0,128,2,2")
        assert float(client.query("CAFM:TIME?")) == pytest.approx(8 * amplitude / 2)
        current = client.query_block("CAFM:IV?", "<f8")
        bias = IvSweep(amplitude, 0.0, 128, 2, 2.0).bias_v()[:128]
        found = analyse_iv(bias, cycle_mean(current, 2), 2.0)
        lobes.append(found.lobe_area_a_v)
        thresholds.append(found.set_threshold_v)
        assert client.query("BIAS:DC?") == f"{bias[-1]:.9g}"  # the last step is held
    v_th = model.readouts.cafm.truth()["switching_threshold_v"][-1]
    assert math.isnan(thresholds[0]) and lobes[0] < 0.02 * lobes[1]
    assert abs(thresholds[1] - v_th) <= 5.0 / 32 / 2 + 1e-9  # half a step


def test_the_displacement_current_is_c_dv_dt_smeared_by_rc_and_the_amplifier_clips():
    contact = MemristiveContact({"cafm_rectifier_saturation_current_a": 0.0,
                                 "cafm_current_noise_a_per_rthz": 0.0,
                                 "cafm_switching_threshold_v": 9.0,
                                 "cafm_threshold_grain_spread_v": 0.0})
    # the review's rho/4r = 2.5 GOhm with 20 pF: RC = 50 ms (not its 4-40 s)
    assert contact.rc_time_s() == pytest.approx(0.05)
    sweep = IvSweep(4.0, 0.0, 256, 1, 8.0)  # 7.8 ms steps, shorter than RC
    current, _, truth = contact.sweep(sweep, 2, 300.0, -4.6, 1e-5, None)
    bias = sweep.bias_v()
    w = 1.0 / (1.0 + math.exp(4.6))  # the state held (no switching below 9 V)
    conduction = (truth["off_conductance_s"] + w * (
        truth["on_conductance_s"] - truth["off_conductance_s"])) * bias
    displacement = current - conduction
    steady = displacement[40:60]  # well into the first ramp: C·dV/dt
    assert steady == pytest.approx(20e-12 * 8.0, rel=1e-6)
    assert displacement[64] > 0.5 * steady.mean()  # just past +A the charge still arrives
    clipped, _, truth = contact.sweep(sweep, 2, 300.0, -4.6, 1e-10, None)
    assert clipped.max() == 1e-10 and truth["saturated_samples"] > 0


def test_the_controller_steps_the_waveforms_the_plans_describe():
    from vegard.plans.spectroscopy_waveforms import iv_triangle, kpfm_bias_step

    planned = iv_triangle(3.5, 64, 3, 7.0, offset_v=0.5)
    swept = IvSweep(3.5, 0.5, 64, 3, 7.0)
    assert swept.bias_v() == pytest.approx(planned.bias_v)
    assert swept.step_duration_s() == pytest.approx(planned.duration_s[0])
    assert swept.duration_s() == pytest.approx(planned.total_duration_s)
    step = KpfmStep(5.0, 1.0, 30.0, 0.02, -1.0)
    recorded = kpfm_bias_step(5.0, 1.0, 30.0, 0.02, baseline_v=-1.0)
    assert step.samples() == recorded.bias_v.size
    assert step.samples_before() == int(np.sum(recorded.bias_v == -1.0))
    assert step.duration_s() == pytest.approx(recorded.total_duration_s)
