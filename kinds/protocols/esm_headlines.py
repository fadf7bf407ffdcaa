"""The ESM analysis figures a scientist looks for first, with their units."""

from __future__ import annotations

from typing import Any

HEADLINE_RESULTS = {
    "activation_energy_kj_mol": ("E_A from a_f (Arrhenius)", "kJ/mol"),
    "apparent_activation_energy_lf_kj_mol": ("apparent E_A from Ā_LF", "kJ/mol"),
    "delta_c_over_c_300k": ("Δc/c at 300 K (Eq. 4)", ""),
    "r_total_ohm": ("R_total = U_ac / I", "Ω"),
    "a_f_mean_pm": ("a_f (compensated Vegard strain)", "pm"),
    "a_lf_mean_pm": ("Ā_LF", "pm"),
    "a_hf_mean_pm": ("A_HF (electrostatic)", "pm"),
    "resonance_frequency_mean_hz": ("contact resonance", "Hz"),
    "quality_factor_mean": ("quality factor", ""),
}


def headline_lines(analysis: dict[str, Any]) -> list[str]:
    lines = []
    for key, (label, unit) in HEADLINE_RESULTS.items():
        value = analysis.get(key)
        if not isinstance(value, (int, float)):
            continue
        stderr = analysis.get(key.replace("_kj_mol", "_stderr_kj_mol")) if "kj_mol" in key else None
        spread = f" ± {stderr:.2g}" if isinstance(stderr, (int, float)) else ""
        lines.append(f"  {label:<34} {value:.4g}{spread} {unit}".rstrip())
    return lines
