"""A LiMn1.5Ni0.5O4 (LMNO) single crystal as an operando SXDM experiment sees it.

For a cell lithium content x (1 → 0, from the potentiostat's cell model) the model gives, at
any sample position (x, y) in µm, what the (400) nanodiffraction depends on: whether the
beam hits the crystal, how strongly it scatters, the local volume fraction, lithium content
and d400 spacing of each phase, and the local tilt of the (400) planes. Pure numpy,
vectorised over positions, deterministic from the seed; nothing moves except through x.

Model and working assumptions (numbers are the defaults of `LmnoCrystal.PARAMETERS`):

Shape. A (111)-faceted octahedron seen along its four-fold axis (the (400) normal is the
sample's +z): a square outline of `crystal_size_um` from vertex to vertex, rotated in plane,
the vertices cut by small {100} truncations, every facet line shifted a little at random.
The beam integrates through the thickness, which grows linearly from the outline (the two
{111} pyramids) up to a flat top `thickness_cap_um`; the scattering strength is that
thickness over the cap (≤ 1), with a few per cent of smooth texture.

Lithium and lattice (paper numbers: 2.0409 Å at 4.1 V, 2.0332 Å near 4.7 V before phase
separation, Li0.5 phase 2.0184 Å during the second plateau, multi-point nucleation late in
plateau 1, edges and corners last; core-shell Li0 growth in plateau 2):
- Li1 phase, solid solution for x ≥ `nucleation_onset_x` (0.6): d400 linear in the local
  lithium content from `d400_li1_angstrom` (x = 1) to `d400_solid_solution_end_angstrom`
  (x = onset). The lithium taken out is modulated by a static, defect-templated pattern:
  1 − x_local = (1 − x)·(1 + `li_heterogeneity`·m(r)), m a smooth random field of unit rms
  and zero weighted mean (mass conserved; ±0.01-0.02 in x near the onset).
  The same defects strain the lattice: every phase's d400 carries a factor
  (1 − `defect_strain_rms`·m(r)), so the pristine map already shows the pattern.
- Plateau 1 two-phase part (onset > x ≥ 0.5): the Li1 phase stays at its onset composition
  and the Li0.5 phase (`d400_li05_angstrom` at x = 0.5) takes the rest; its volume fraction
  follows the lever rule. Where it sits: it nucleates at `nucleation_sites` points of the
  top surface (in projection: inside the outline), chosen at the most delithiated spots of
  m, and grows outward from each at its own speed after its own delay; a delay that grows
  toward every facet line (twice at corners) makes edges and corners transform last.
- Plateau 2 (x < 0.5): Li0 (`d400_li0_angstrom`) grows as a shell from the outline inward
  (core-shell) while the Li0.5 core keeps x ≈ 0.5 with a dynamic lithium pattern of rms
  `li05_heterogeneity_rms` that renews `li05_pattern_turnover` times over the plateau
  (d400 varies with it by `d400_li05_slope_angstrom` per unit x), so the Li0.5 mean d400
  stays put while its map fluctuates.
Transformation fronts are `front_width_um` wide; each point holds a volume fraction of each
phase (the beam sums the crystal's depth).

Tilt. tilt_x_deg / tilt_y_deg are right-handed rotations of the local (400) normal about
the sample's x and y axes: n = R_y(tilt_y)·R_x(tilt_x)·ẑ = (sin ty cos tx, −sin tx,
cos ty cos tx). Plateau 1 and pristine: `plateau1_domains` mosaic domains (soft Voronoi
cells) whose tilt vectors turn and grow during charge; their boundaries sharpen from
`tilt_boundary_width_pristine_um` to `tilt_boundary_width_charged_um` and the zero-tilt
"white space" around them fades. Plateau 2: `plateau2_domains` smaller domains near the
edges (envelope decaying over `edge_domain_depth_um`), the centre homogeneous. The field is
taken relative to the crystal's strength-weighted mean and scaled so that its largest
excursion on the strongly scattering part (≥ 20 % of the maximum strength) is
`pristine_tilt_max_deg` (x = 1) → `plateau1_tilt_max_deg` (x = 0.5) and then
`plateau2_tilt_max_deg` by x = 0.4 (then steady); nowhere does it exceed that bound. The
whole crystal can be misoriented by (`crystal_tilt_x_deg`, `crystal_tilt_y_deg`).

Diffraction. `peak_frame_counts_per_photon` (frame-integrated counts at the rocking
maximum per incident photon, strength 1), `mosaic_sigma_deg` and `microstrain_sigma` (the
angular and relative d spread inside one footprint) feed `nanodiffraction`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vegard.diffraction_geometry import tilt_altitude_azimuth_deg

from .parameters import Parameter, model_values

PHASES = ("li1", "li05", "li0")
"""Phase names: LiMn1.5Ni0.5O4, Li0.5Mn1.5Ni0.5O4, Mn1.5Ni0.5O4."""

PHASE_LI_CONTENT = {"li1": 1.0, "li05": 0.5, "li0": 0.0}

FIELD_HALF_WIDTH_UM = 3.0
"""The scan field is ±3 µm around the origin (6 × 6 µm²)."""

MASK_FRACTION = 0.2
"""Pixels below this fraction of the maximum intensity are masked (the paper's rule)."""

_REFERENCE_STEP_UM = 0.04
_RANDOM_MODES = 40
_HETEROGENEITY_WAVELENGTHS_UM = (0.7, 3.5)
_SHELL_WAVELENGTHS_UM = (0.5, 2.0)
_SITE_MIN_DEPTH_UM = 0.45
_PLATEAU2_SWITCH_WIDTH_X = 0.04
"""Lithium-content range over which the plateau-1 tilt pattern gives way to plateau 2's."""
_PLATEAU2_TILT_GROWTH_X = 0.1
"""Lithium-content range over which plateau 2's tilts grow to their largest."""
_CACHE_SIZE = 64
_STATS_X_STEP = 1e-3
"""The reference-grid statistics that normalise the Li0.5 pattern and the tilts are worked
out at x on this grid and interpolated linearly between (every acquisition has its own x:
worked out exactly, they cost more than the frames of a short line)."""


@dataclass(frozen=True)
class _RandomField:
    """A smooth random field: a fixed sum of plane waves, each with its own drift rate."""

    wavevectors: np.ndarray  # (n, 2) rad/µm
    phases: np.ndarray  # (n,)
    drift: np.ndarray  # (n,) rad per unit of the drift variable

    @classmethod
    def draw(cls, rng: np.random.Generator, wavelengths_um: tuple[float, float]) -> _RandomField:
        wavelength = np.exp(rng.uniform(*np.log(wavelengths_um), _RANDOM_MODES))
        angle = rng.uniform(0.0, 2.0 * math.pi, _RANDOM_MODES)
        k = 2.0 * math.pi / wavelength
        wavevectors = np.column_stack((k * np.cos(angle), k * np.sin(angle)))
        phases = rng.uniform(0.0, 2.0 * math.pi, _RANDOM_MODES)
        drift = rng.uniform(0.5, 1.5, _RANDOM_MODES) * rng.choice([-1.0, 1.0], _RANDOM_MODES)
        return cls(wavevectors, phases, drift)

    def __call__(self, points: np.ndarray, shift: float = 0.0) -> np.ndarray:
        argument = points @ self.wavevectors.T + self.phases + self.drift * shift
        return np.cos(argument).sum(axis=-1) / math.sqrt(_RANDOM_MODES / 2.0)


@dataclass(frozen=True)
class _Domains:
    """Mosaic domains: seeds, initial tilt vectors (deg) and how they turn and grow."""

    seeds_um: np.ndarray  # (n, 2)
    tilt_deg: np.ndarray  # (n, 2) initial (tilt_x, tilt_y) direction × amplitude
    turn_rad: np.ndarray  # (n,) rotation of the tilt vector over the plateau
    growth: np.ndarray  # (n,) relative amplitude growth over the plateau

    def field(
        self, points: np.ndarray, progress: float, width_um: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Soft-Voronoi blend of the domain tilts, and the purity (1 inside, 0 on boundaries)."""
        distance = np.linalg.norm(points[..., None, :] - self.seeds_um, axis=-1)
        weight = np.exp(-(distance - distance.min(axis=-1, keepdims=True)) / width_um)
        share = weight / weight.sum(axis=-1, keepdims=True)
        angle = self.turn_rad * progress
        c, s = np.cos(angle), np.sin(angle)
        vx, vy = self.tilt_deg[:, 0], self.tilt_deg[:, 1]
        scale = 1.0 + self.growth * progress
        turned = np.column_stack((c * vx - s * vy, s * vx + c * vy)) * scale[:, None]
        purity = np.clip(2.0 * share.max(axis=-1) - 1.0, 0.0, 1.0)
        return share @ turned, purity


@dataclass(frozen=True)
class _Reference:
    """The fixed grid over the crystal on which fractions and normalisations are computed."""

    points: np.ndarray  # (n, 2) inside points
    strength: np.ndarray  # (n,)
    bright: np.ndarray  # (n,) bool: strength ≥ MASK_FRACTION · max
    t1_sorted: np.ndarray
    t1_cumulative: np.ndarray
    t2_sorted: np.ndarray
    t2_cumulative: np.ndarray


class LmnoCrystal:
    """One faceted LMNO crystal in a 6 × 6 µm² scan field, its state a function of x.

    Immutable after construction apart from an internal cache of per-x normalisations
    (safe to share between threads). Positions are sample-frame (x, y) in µm, shape
    (..., 2); results keep the leading shape.
    """

    PARAMETERS: tuple[Parameter, ...] = (
        # --- shape
        Parameter("crystal_size_um", 4.0, "µm", 0.5, 5.8,
                  "vertex-to-vertex width of the square (octahedron) outline"),
        Parameter("crystal_center_x_um", 0.15, "µm", -2.0, 2.0, "x of the crystal's centre"),
        Parameter("crystal_center_y_um", -0.1, "µm", -2.0, 2.0, "y of the crystal's centre"),
        Parameter("crystal_rotation_deg", 12.0, "deg", -180.0, 180.0,
                  "in-plane angle of a vertex (the crystal's [100]) from the sample x axis"),
        Parameter("corner_truncation", 0.12, "1", 0.0, 0.5,
                  "fraction of the half-width cut off each vertex by a {100} facet"),
        Parameter("outline_irregularity", 0.04, "1", 0.0, 0.2,
                  "relative random shift of each facet line"),
        Parameter("thickness_cap_um", 2.5, "µm", 0.1, 10.0,
                  "thickness of the flat top; strength is thickness / cap"),
        Parameter("strength_texture", 0.05, "1", 0.0, 0.5,
                  "relative rms of a smooth modulation of the scattering strength"),
        # --- lattice
        Parameter("d400_li1_angstrom", 2.0409, "Å", 1.9, 2.2, "d400 of the Li1 phase at x = 1"),
        Parameter("d400_solid_solution_end_angstrom", 2.0332, "Å", 1.9, 2.2,
                  "d400 of the Li1 solid solution at the nucleation onset"),
        Parameter("d400_li05_angstrom", 2.0184, "Å", 1.9, 2.2,
                  "d400 of the Li0.5 phase at x = 0.5"),
        Parameter("d400_li05_slope_angstrom", 0.04, "Å", 0.0, 0.2,
                  "change of the Li0.5 phase's d400 per unit of local lithium content"),
        Parameter("d400_li0_angstrom", 2.0, "Å", 1.9, 2.2, "d400 of the Li0 phase"),
        Parameter("nucleation_onset_x", 0.6, "1", 0.51, 0.99,
                  "cell lithium content at which the Li0.5 phase starts to nucleate"),
        Parameter("li_heterogeneity", 0.03, "1", 0.0, 0.5,
                  "relative rms modulation of the extracted lithium in the Li1 solid solution"),
        Parameter("defect_strain_rms", 1.5e-4, "1", 0.0, 0.005,
                  "rms of the static defect strain of d400 (same pattern as the lithium)"),
        Parameter("li05_heterogeneity_rms", 0.02, "1", 0.0, 0.2,
                  "rms of the dynamic lithium pattern of the Li0.5 phase"),
        Parameter("li05_pattern_turnover", 3.0, "1", 0.0, 20.0,
                  "how many times the Li0.5 pattern renews over plateau 2"),
        # --- phase transformation
        Parameter("nucleation_sites", 4.0, "1", 1.0, 12.0,
                  "number of surface points where the Li0.5 phase nucleates"),
        Parameter("nucleation_min_spacing_um", 1.0, "µm", 0.1, 3.0,
                  "minimum distance between nucleation sites"),
        Parameter("nucleation_delay_um", 0.3, "µm", 0.0, 2.0,
                  "largest head start difference between sites, as front travel"),
        Parameter("edge_delay_um", 0.8, "µm", 0.0, 5.0,
                  "extra front travel needed at a facet edge (about twice at corners)"),
        Parameter("edge_delay_length_um", 0.3, "µm", 0.02, 2.0,
                  "decay length of the edge delay into the crystal"),
        Parameter("front_width_um", 0.12, "µm", 0.01, 1.0, "width of a transformation front"),
        Parameter("shell_roughness_um", 0.1, "µm", 0.0, 1.0,
                  "rms roughness of the Li0 shell front in plateau 2"),
        # --- tilt domains
        Parameter("plateau1_domains", 6.0, "1", 1.0, 30.0,
                  "mosaic domains of the pristine crystal and plateau 1"),
        Parameter("plateau2_domains", 16.0, "1", 1.0, 60.0,
                  "smaller edge domains that form in plateau 2"),
        Parameter("pristine_tilt_max_deg", 0.06, "deg", 0.0, 1.0,
                  "largest tilt from the mean orientation at x = 1"),
        Parameter("plateau1_tilt_max_deg", 0.07, "deg", 0.0, 1.0,
                  "largest tilt from the mean at the end of plateau 1"),
        Parameter("plateau2_tilt_max_deg", 0.24, "deg", 0.0, 2.0,
                  "largest tilt from the mean at the end of plateau 2"),
        Parameter("tilt_boundary_width_pristine_um", 0.3, "µm", 0.01, 2.0,
                  "width of the tilt-domain boundaries before charge"),
        Parameter("tilt_boundary_width_charged_um", 0.06, "µm", 0.01, 2.0,
                  "width of the tilt-domain boundaries at the end of plateau 1 and after"),
        Parameter("domain_turn_deg", 120.0, "deg", 0.0, 360.0,
                  "largest rotation of a domain's tilt direction over a plateau"),
        Parameter("edge_domain_depth_um", 0.6, "µm", 0.05, 3.0,
                  "decay length of the plateau-2 domains' tilt away from the edges"),
        Parameter("crystal_tilt_x_deg", 0.0, "deg", -2.0, 2.0,
                  "misorientation of the whole crystal about the sample x axis"),
        Parameter("crystal_tilt_y_deg", 0.0, "deg", -2.0, 2.0,
                  "misorientation of the whole crystal about the sample y axis"),
        # --- diffraction
        Parameter("peak_frame_counts_per_photon", 5.0e-4, "1", 0.0, 1.0,
                  "counts in the frame at the rocking maximum per incident photon, strength 1"),
        Parameter("mosaic_sigma_deg", 0.015, "deg", 0.0, 1.0,
                  "angular spread of the (400) normal inside one footprint (sigma)"),
        Parameter("microstrain_sigma", 5.0e-5, "1", 0.0, 0.01,
                  "relative spread of d400 inside one footprint (sigma)"),
    )

    def __init__(
        self,
        parameters: Mapping[str, float] | None = None,
        seed: int | Sequence[int] = 0,
    ) -> None:
        values = model_values(self.PARAMETERS, parameters, "lmno_crystal")
        _check_consistent(values)
        self.parameters: dict[str, float] = values
        p = values
        streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(7)]
        outline_rng, field_rng, site_rng, domain1_rng, domain2_rng, texture_rng, dyn_rng = (
            streams
        )

        # Outline: four {111} edge lines and four {100} truncations, as half-planes n·p ≤ h.
        half = p["crystal_size_um"] / 2.0
        rotation = math.radians(p["crystal_rotation_deg"])
        edge_angles = rotation + math.pi / 4.0 + np.arange(4) * math.pi / 2.0
        cut_angles = rotation + np.arange(4) * math.pi / 2.0
        angles = np.concatenate((edge_angles, cut_angles))
        self._normals = np.column_stack((np.cos(angles), np.sin(angles)))
        offsets = np.concatenate(
            (np.full(4, half / math.sqrt(2.0)), np.full(4, half * (1.0 - p["corner_truncation"])))
        )
        offsets *= 1.0 + p["outline_irregularity"] * outline_rng.uniform(-1.0, 1.0, 8)
        self._center = np.array([p["crystal_center_x_um"], p["crystal_center_y_um"]])
        self._offsets = offsets

        self._li_field = _RandomField.draw(field_rng, _HETEROGENEITY_WAVELENGTHS_UM)
        self._texture_field = _RandomField.draw(texture_rng, _HETEROGENEITY_WAVELENGTHS_UM)
        self._shell_field = _RandomField.draw(texture_rng, _SHELL_WAVELENGTHS_UM)
        self._li05_field = _RandomField.draw(dyn_rng, _HETEROGENEITY_WAVELENGTHS_UM)
        self._cache: dict[tuple[str, float], object] = {}

        # Reference grid over the field; normalise the static heterogeneity on it.
        axis = np.arange(-FIELD_HALF_WIDTH_UM, FIELD_HALF_WIDTH_UM + 1e-9, _REFERENCE_STEP_UM)
        gx, gy = np.meshgrid(axis, axis)
        grid = np.column_stack((gx.ravel(), gy.ravel()))
        depth = self._depth(grid)
        inside_points = grid[depth > 0]
        strength = self._strength(inside_points)
        raw_li = self._li_field(inside_points)
        self._li_mean = float(np.average(raw_li, weights=strength))
        self._li_rms = float(np.sqrt(np.average((raw_li - self._li_mean) ** 2,
                                                weights=strength)))
        self._strength_max = float(strength.max())
        m = self._heterogeneity(inside_points)

        # Nucleation sites: the most delithiated interior spots, kept apart.
        interior = self._depth(inside_points) > _SITE_MIN_DEPTH_UM
        order = np.argsort(-m[interior])
        candidates = inside_points[interior][order]
        sites: list[np.ndarray] = []
        for candidate in candidates:
            if all(np.linalg.norm(candidate - s) >= p["nucleation_min_spacing_um"] for s in sites):
                sites.append(candidate)
            if len(sites) == round(p["nucleation_sites"]):
                break
        self._sites = np.array(sites)
        n_sites = len(sites)
        self._site_speed = site_rng.uniform(0.7, 1.3, n_sites)
        self._site_delay_um = site_rng.uniform(0.0, p["nucleation_delay_um"], n_sites)

        # Mosaic domains.
        self._domains1 = self._draw_domains(domain1_rng, round(p["plateau1_domains"]), None)
        self._domains2 = self._draw_domains(
            domain2_rng, round(p["plateau2_domains"]), 1.5 * p["edge_domain_depth_um"]
        )

        t1 = self._t1(inside_points)
        t2 = self._t2(inside_points)
        self._reference = _Reference(
            points=inside_points,
            strength=strength,
            bright=strength >= MASK_FRACTION * self._strength_max,
            t1_sorted=np.sort(t1),
            t1_cumulative=_cumulative(strength[np.argsort(t1)]),
            t2_sorted=np.sort(t2),
            t2_cumulative=_cumulative(strength[np.argsort(t2)]),
        )

    # ----------------------------------------------------------------- geometry
    def _depth(self, points: np.ndarray) -> np.ndarray:
        """In-plane distance inside the outline (µm); negative outside."""
        return self._line_distances(points).min(axis=-1)

    def _line_distances(self, points: np.ndarray) -> np.ndarray:
        return self._offsets - (points - self._center) @ self._normals.T

    def _raw_strength(self, points: np.ndarray) -> np.ndarray:
        depth_111 = self._line_distances(points)[..., :4].min(axis=-1)
        outline = self._depth(points)
        thickness = np.clip(2.0 * math.sqrt(2.0) * depth_111, 0.0, self.parameters[
            "thickness_cap_um"])
        return np.where(outline > 0, thickness / self.parameters["thickness_cap_um"], 0.0)

    def _strength(self, points: np.ndarray) -> np.ndarray:
        texture = 1.0 + self.parameters["strength_texture"] * self._texture_field(points)
        return self._raw_strength(points) * np.clip(texture, 0.0, None)

    def _heterogeneity(self, points: np.ndarray) -> np.ndarray:
        """Static defect pattern m(r): zero strength-weighted mean, unit rms over the crystal."""
        return (self._li_field(points) - self._li_mean) / self._li_rms

    def _t1(self, points: np.ndarray) -> np.ndarray:
        """Plateau-1 transformation order (µm of front travel): nucleation sites first."""
        p = self.parameters
        distance = np.linalg.norm(points[..., None, :] - self._sites, axis=-1)
        travel = (distance / self._site_speed + self._site_delay_um).min(axis=-1)
        edges = np.exp(-np.clip(self._line_distances(points), 0.0, None)
                       / p["edge_delay_length_um"]).sum(axis=-1)
        return travel + p["edge_delay_um"] * edges

    def _t2(self, points: np.ndarray) -> np.ndarray:
        """Plateau-2 transformation order (µm): from the outline inward, slightly rough."""
        depth = np.clip(self._depth(points), 0.0, None)
        return depth + self.parameters["shell_roughness_um"] * self._shell_field(points)

    def _draw_domains(
        self, rng: np.random.Generator, count: int, max_depth_um: float | None
    ) -> _Domains:
        seeds = []
        half = self.parameters["crystal_size_um"] / 2.0
        while len(seeds) < count:
            candidate = self._center + rng.uniform(-half, half, 2)
            depth = float(self._depth(candidate))
            if depth > 0.0 and (max_depth_um is None or depth < max_depth_um):
                seeds.append(candidate)
        direction = rng.uniform(0.0, 2.0 * math.pi, count)
        amplitude = rng.uniform(0.4, 1.0, count)
        tilt = np.column_stack((np.cos(direction), np.sin(direction))) * amplitude[:, None]
        turn = np.radians(self.parameters["domain_turn_deg"]) * rng.uniform(-1.0, 1.0, count)
        growth = rng.uniform(0.0, 0.6, count)
        return _Domains(np.array(seeds), tilt, turn, growth)

    # ----------------------------------------------------------------- per-x state
    def _cached(self, key: str, x_li: float, compute: Callable[[float], Any]) -> Any:
        """Per-x quantities computed on the reference grid, kept for the latest few x."""
        item = (key, x_li)
        value = self._cache.get(item)
        if value is None:
            value = compute(x_li)
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[item] = value
        return value

    def _on_x_grid(self, key: str, x_li: float, compute: Callable[[float], Any]) -> tuple:
        """`compute(x)` interpolated linearly between the `_STATS_X_STEP` grid nodes around x
        (each node computed once, `_cached`)."""
        position = x_li / _STATS_X_STEP
        low = math.floor(position)
        share = position - low
        below = self._cached(key, low * _STATS_X_STEP, compute)
        if share < 1e-9:
            return below
        above = self._cached(key, (low + 1) * _STATS_X_STEP, compute)
        return tuple((1.0 - share) * a + share * b for a, b in zip(below, above, strict=True))

    def _front_thresholds(self, x_li: float) -> tuple[float, float]:
        """Where the plateau-1 and plateau-2 fronts stand (in their order units, µm)."""
        p = self.parameters
        ref = self._reference
        width = p["front_width_um"]
        onset = p["nucleation_onset_x"]
        f05 = float(np.clip((onset - x_li) / (onset - 0.5), 0.0, 1.0))
        f0 = float(np.clip((0.5 - x_li) / 0.5, 0.0, 1.0))
        tau1 = np.interp(f05, ref.t1_cumulative, ref.t1_sorted) + width * (f05 - 0.5)
        tau2 = np.interp(f0, ref.t2_cumulative, ref.t2_sorted) + width * (f0 - 0.5)
        if f05 == 0.0:
            tau1 = -np.inf
        if f0 == 0.0:
            tau2 = -np.inf
        return float(tau1), float(tau2)

    def _li05_pattern_stats(self, x_li: float) -> tuple[float, float]:
        ref = self._reference
        raw = self._li05_field(ref.points, self._li05_shift(x_li))
        mean = float(np.average(raw, weights=ref.strength))
        rms = float(np.sqrt(np.average((raw - mean) ** 2, weights=ref.strength)))
        return mean, rms

    def _li05_shift(self, x_li: float) -> float:
        progress = float(np.clip((0.5 - x_li) / 0.5, 0.0, 1.0))
        return 2.0 * math.pi * self.parameters["li05_pattern_turnover"] * progress

    def _raw_tilt(self, points: np.ndarray, x_li: float) -> np.ndarray:
        p = self.parameters
        progress1 = float(np.clip((1.0 - x_li) / 0.5, 0.0, 1.0))
        progress2 = float(np.clip((0.5 - x_li) / 0.5, 0.0, 1.0))
        switch = _smoothstep((0.5 - x_li) / _PLATEAU2_SWITCH_WIDTH_X)
        width1 = p["tilt_boundary_width_pristine_um"] + progress1 * (
            p["tilt_boundary_width_charged_um"] - p["tilt_boundary_width_pristine_um"]
        )
        tilt1, purity = self._domains1.field(points, progress1, width1)
        white_space = 1.0 - progress1
        tilt1 = tilt1 * (1.0 - white_space * (1.0 - purity))[..., None]
        tilt2, _ = self._domains2.field(points, progress2, p["tilt_boundary_width_charged_um"])
        depth = np.clip(self._depth(points), 0.0, None)
        tilt2 = tilt2 * np.exp(-depth / p["edge_domain_depth_um"])[..., None]
        return (1.0 - 0.8 * switch) * tilt1 + switch * tilt2

    def _tilt_normalisation(self, x_li: float) -> tuple[np.ndarray, float, float]:
        """(mean raw tilt, scale, cap) so that the relative tilt peaks at the target."""
        ref = self._reference
        raw = self._raw_tilt(ref.points, x_li)
        mean = np.average(raw, axis=0, weights=ref.strength)
        excursion = np.linalg.norm(raw - mean, axis=-1)
        target = self._tilt_max_deg(x_li)
        largest = float(excursion[ref.bright].max())
        scale = target / largest if largest > 0 else 0.0
        return mean, scale, target

    def _tilt_max_deg(self, x_li: float) -> float:
        """Largest relative tilt: grows through plateau 1, jumps early in plateau 2."""
        p = self.parameters
        if x_li >= 0.5:
            progress = (1.0 - x_li) / 0.5
            return p["pristine_tilt_max_deg"] + progress * (
                p["plateau1_tilt_max_deg"] - p["pristine_tilt_max_deg"])
        progress = _smoothstep((0.5 - x_li) / _PLATEAU2_TILT_GROWTH_X)
        return p["plateau1_tilt_max_deg"] + progress * (
            p["plateau2_tilt_max_deg"] - p["plateau1_tilt_max_deg"])

    def _reference_state(self, x_li: float) -> dict[str, np.ndarray]:
        return self._cached("reference", x_li, lambda x: self.maps(x, self._reference.points))

    # ----------------------------------------------------------------- public API
    def maps(self, x_li: float, points_xy_um: np.ndarray) -> dict[str, np.ndarray]:
        """The crystal's local state at sample positions (µm, shape (..., 2)).

        Keys: inside (bool), thickness_um, strength (0 outside), li_content, tilt_x_deg,
        tilt_y_deg and, for each phase in PHASES, `<phase>_fraction`, `<phase>_li_content`
        and `<phase>_d400_angstrom`. Values are defined (finite) everywhere; weight them
        by strength.
        """
        p = self.parameters
        x = float(np.clip(x_li, 0.0, 1.0))
        points = np.asarray(points_xy_um, dtype=float)
        depth = self._depth(points)
        strength = self._strength(points)
        m = self._heterogeneity(points)
        defect = 1.0 - p["defect_strain_rms"] * m

        onset = p["nucleation_onset_x"]
        x_ss = max(x, onset)
        li1_content = 1.0 - (1.0 - x_ss) * (1.0 + p["li_heterogeneity"] * m)
        slope1 = (p["d400_li1_angstrom"] - p["d400_solid_solution_end_angstrom"]) / (1 - onset)
        li1_d = (p["d400_li1_angstrom"] - slope1 * (1.0 - li1_content)) * defect

        mean05, rms05 = self._on_x_grid("li05", x, self._li05_pattern_stats)
        pattern05 = (self._li05_field(points, self._li05_shift(x)) - mean05) / rms05
        li05_content = 0.5 + p["li05_heterogeneity_rms"] * pattern05
        li05_d = (p["d400_li05_angstrom"]
                  + p["d400_li05_slope_angstrom"] * (li05_content - 0.5)) * defect
        li0_d = p["d400_li0_angstrom"] * defect

        tau1, tau2 = self._cached("fronts", x, self._front_thresholds)
        width = p["front_width_um"]
        transformed1 = np.clip(0.5 + (tau1 - self._t1(points)) / width, 0.0, 1.0)
        transformed2 = np.clip(0.5 + (tau2 - self._t2(points)) / width, 0.0, 1.0)
        if x >= 0.5:
            fractions = {"li1": 1.0 - transformed1, "li05": transformed1,
                         "li0": np.zeros_like(transformed1)}
        else:
            fractions = {"li1": np.zeros_like(transformed2), "li05": 1.0 - transformed2,
                         "li0": transformed2}
        contents = {"li1": li1_content, "li05": li05_content,
                    "li0": np.zeros_like(li1_content)}

        mean_tilt, scale, cap = self._on_x_grid("tilt", x, self._tilt_normalisation)
        tilt = (self._raw_tilt(points, x) - mean_tilt) * scale
        size = np.linalg.norm(tilt, axis=-1, keepdims=True)
        tilt = tilt * np.minimum(1.0, cap / np.maximum(size, 1e-300))

        result = {
            "inside": depth > 0,
            "thickness_um": np.clip(2.0 * math.sqrt(2.0) * self._line_distances(points)[
                ..., :4].min(axis=-1), 0.0, p["thickness_cap_um"]) * (depth > 0),
            "strength": strength,
            "li_content": sum(fractions[k] * contents[k] for k in PHASES),
            "tilt_x_deg": tilt[..., 0] + p["crystal_tilt_x_deg"],
            "tilt_y_deg": tilt[..., 1] + p["crystal_tilt_y_deg"],
        }
        ds = {"li1": li1_d, "li05": li05_d, "li0": li0_d}
        for phase in PHASES:
            result[f"{phase}_fraction"] = fractions[phase]
            result[f"{phase}_li_content"] = contents[phase]
            result[f"{phase}_d400_angstrom"] = ds[phase]
        return result

    def phase_fractions(self, x_li: float) -> dict[str, float]:
        """Volume (strength-weighted) fraction of each phase in the whole crystal."""
        ref = self._reference
        state = self._reference_state(float(np.clip(x_li, 0.0, 1.0)))
        return {k: float(np.average(state[f"{k}_fraction"], weights=ref.strength))
                for k in PHASES}

    def dominant_phase(self, x_li: float) -> str:
        """The phase holding most of the crystal: the one a detector setting would follow."""
        fractions = self.phase_fractions(x_li)
        return max(fractions, key=fractions.__getitem__)

    def d400_mean_angstrom(self, x_li: float, phase: str | None = None) -> float:
        """Intensity-weighted mean d400 of one phase, or of all phases together (None)."""
        ref = self._reference
        state = self._reference_state(float(np.clip(x_li, 0.0, 1.0)))
        phases = PHASES if phase is None else (phase,)
        weight = np.stack([ref.strength * state[f"{k}_fraction"] for k in phases])
        d = np.stack([state[f"{k}_d400_angstrom"] for k in phases])
        if weight.sum() <= 0:
            raise ValueError(f"no {phase} phase in the crystal at x = {x_li:g}")
        return float((weight * d).sum() / weight.sum())

    def mean_normal(self, x_li: float, phase: str) -> np.ndarray:
        """Intensity-weighted mean direction of the (400) normal of one phase (unit vector)."""
        ref = self._reference
        state = self._reference_state(float(np.clip(x_li, 0.0, 1.0)))
        weight = ref.strength * state[f"{phase}_fraction"]
        normal = tilt_normal(state["tilt_x_deg"], state["tilt_y_deg"])
        mean = (weight[:, None] * normal).sum(axis=0)
        return mean / np.linalg.norm(mean)

    def ground_truth_maps(
        self,
        x_li: float,
        grid: tuple[np.ndarray, np.ndarray],
        phase: str | None = None,
    ) -> dict[str, np.ndarray | str]:
        """What an ideal SXDM analysis of one phase should find on a scan grid.

        `grid` is (x_um, y_um), two 1-D arrays; maps have shape (len(y_um), len(x_um)).
        `phase` defaults to the dominant phase. Keys: d400_angstrom, tilt_x_deg, tilt_y_deg
        (sample frame, this module's convention), tilt_altitude_deg and tilt_azimuth_deg
        (angle of the local (400) normal from the phase's intensity-weighted mean normal,
        and the direction of that tilt around it: 0° toward sample +x, 90° toward +y),
        intensity (strength × phase fraction), mask (intensity ≥ 20 % of its maximum on the
        grid), li_content (all phases), phase. Unmasked values are NaN.
        """
        phase = self.dominant_phase(x_li) if phase is None else phase
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}; known: {PHASES}")
        x_um, y_um = (np.asarray(a, dtype=float) for a in grid)
        gx, gy = np.meshgrid(x_um, y_um)
        state = self.maps(x_li, np.stack((gx, gy), axis=-1))
        intensity = state["strength"] * state[f"{phase}_fraction"]
        mask = intensity >= MASK_FRACTION * intensity.max() if intensity.max() > 0 else (
            np.zeros(intensity.shape, dtype=bool))
        normal = tilt_normal(state["tilt_x_deg"], state["tilt_y_deg"])
        altitude, azimuth = tilt_altitude_azimuth_deg(normal, self.mean_normal(x_li, phase))

        def masked(values: np.ndarray) -> np.ndarray:
            return np.where(mask, values, np.nan)

        return {
            "d400_angstrom": masked(state[f"{phase}_d400_angstrom"]),
            "tilt_x_deg": masked(state["tilt_x_deg"]),
            "tilt_y_deg": masked(state["tilt_y_deg"]),
            "tilt_altitude_deg": masked(altitude),
            "tilt_azimuth_deg": masked(azimuth),
            "intensity": intensity,
            "mask": mask,
            "li_content": masked(state["li_content"]),
            "phase": phase,
        }


def tilt_normal(tilt_x_deg: np.ndarray, tilt_y_deg: np.ndarray) -> np.ndarray:
    """Unit (400) normal R_y(tilt_y)·R_x(tilt_x)·ẑ in the sample frame; shape (..., 3)."""
    tx, ty = np.radians(tilt_x_deg), np.radians(tilt_y_deg)
    return np.stack((np.sin(ty) * np.cos(tx), -np.sin(tx), np.cos(ty) * np.cos(tx)), axis=-1)


def _cumulative(weights: np.ndarray) -> np.ndarray:
    """Cumulative weight fraction at each sorted point (midpoint rule, 0 … 1)."""
    total = weights.sum()
    return (np.cumsum(weights) - 0.5 * weights) / total


def _smoothstep(value: float) -> float:
    t = float(np.clip(value, 0.0, 1.0))
    return t * t * (3.0 - 2.0 * t)


def _check_consistent(values: Mapping[str, float]) -> None:
    """Relations between parameters that their separate ranges cannot express."""
    if not values["d400_li1_angstrom"] >= values["d400_solid_solution_end_angstrom"]:
        raise ValueError("lmno_crystal: d400_solid_solution_end_angstrom must not exceed "
                         "d400_li1_angstrom (the lattice shrinks on delithiation)")
