"""Which drift-tracking shifts the series plan believes."""

from __future__ import annotations

from vegard.plans.esm_temperature_series import trusted_shift_px


def test_a_good_correlation_is_applied():
    assert trusted_shift_px(3.2, -4.5, 0.9, 64) == (3.2, -4.5)


def test_a_poor_correlation_keeps_the_previous_centre():
    assert trusted_shift_px(3.2, -4.5, 0.2, 64) is None
    assert trusted_shift_px(3.2, -4.5, float("nan"), 64) is None


def test_an_implausibly_large_shift_keeps_the_previous_centre():
    assert trusted_shift_px(30.0, 0.0, 0.95, 64) is None
