"""The start-document contract of the ESM and SXDM runs: one typed model per key, written by
the plan (`.document()`) and read back by the analysis (`.of(start)`), live and in replay.

One definition of each field and its default, so a plan and its analysis cannot drift
apart; a run whose start document does not match is refused with the field named.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field


class Frozen(BaseModel):
    """A part of the contract: no field the reader does not know, none changed after."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class StartKey(Frozen):
    """A model stored under `KEY` in a start document."""

    KEY: ClassVar[str]

    @classmethod
    def of(cls, start: dict[str, Any]):
        return cls.model_validate(start[cls.KEY])

    @classmethod
    def of_optional(cls, start: dict[str, Any]):
        value = start.get(cls.KEY)
        return None if value is None else cls.model_validate(value)

    def document(self) -> dict[str, Any]:
        return {self.KEY: self.model_dump(mode="json")}


class EsmMapMetadata(StartKey):
    """What the analysis needs to place each line of a band-excitation map."""

    KEY: ClassVar[str] = "esm_map"
    device: str
    """The AFM's name: the prefix of its data keys."""
    pixels_x: int = Field(ge=1)
    pixels_y: int = Field(ge=1)
    width_nm: float = Field(gt=0)
    height_nm: float = Field(gt=0)
    center_x_nm: float = 0.0
    center_y_nm: float = 0.0
    u_ac_v: float
    u_dc_v: float
    excitations: list[str]
    band_hz: tuple[float, float]
    bins: int = Field(ge=1)
    chirp_duration_s: float = Field(gt=0)
    averages: int = Field(ge=1)
    stream: str = "primary"

    def extent_nm(self) -> tuple[float, float, float, float]:
        """(x_left, x_right, y_bottom, y_top) of the scanned area."""
        half_w, half_h = 0.5 * self.width_nm, 0.5 * self.height_nm
        x0, y0 = self.center_x_nm, self.center_y_nm
        return (x0 - half_w, x0 + half_w, y0 - half_h, y0 + half_h)


class PointGridMetadata(StartKey):
    """Where the points of a spectroscopy grid are, and which detector's keys carry them:
    the part every point-spectroscopy contract shares (BE, FORC, relaxation, tr-KPFM, c-AFM)."""

    device: str
    """The detector's name (`<afm>-voltage_sweep`, `<afm>-iv_curve`, ...): its data keys' prefix."""
    points_x: int = Field(ge=1)
    points_y: int = Field(ge=1)
    width_nm: float = Field(ge=0)
    height_nm: float = Field(ge=0)
    center_x_nm: float = 0.0
    center_y_nm: float = 0.0
    stream: str = "primary"

    def extent_nm(self) -> tuple[float, float, float, float]:
        """(x_left, x_right, y_bottom, y_top) of the grid's cells."""
        half_w, half_h = 0.5 * self.width_nm, 0.5 * self.height_nm
        x0, y0 = self.center_x_nm, self.center_y_nm
        return (x0 - half_w, x0 + half_w, y0 - half_h, y0 + half_h)

    @property
    def points(self) -> int:
        return self.points_x * self.points_y


class BeSpectroscopyMetadata(PointGridMetadata):
    """What the loop analysis needs to place each point's sweep of a spectroscopy grid."""

    KEY: ClassVar[str] = "be_spectroscopy"
    dc_bias_v: list[float]
    """The write biases of one cycle, in the order swept."""
    cycles: int = Field(ge=1)
    read_bias_v: float = 0.0
    u_ac_v: float


class DriftTrackingMetadata(StartKey):
    KEY: ClassVar[str] = "drift_tracking"
    size_factor: float = Field(ge=1)
    pixels: int = Field(ge=1)
    line_rate_hz: float = Field(gt=0)
    stream: str = "drift_tracking"


class LargestGrain(Frozen):
    kind: Literal["largest_grain"] = "largest_grain"


class Disk(Frozen):
    kind: Literal["disk"] = "disk"
    center_nm: tuple[float, float]
    radius_nm: float = Field(gt=0)


Region = Annotated[LargestGrain | Disk, Field(discriminator="kind")]


class EsmSeriesMetadata(StartKey):
    """What the temperature-series analysis needs beyond the map: the setpoints, where to
    average, the material constants of the strain analysis, the read-out frequency."""

    KEY: ClassVar[str] = "esm_series"
    temperatures_k: list[float]
    region: Region = LargestGrain()
    material: dict[str, float | None] = Field(default_factory=dict)
    drive_frequency_hz: float | None = None
    tracking_stream: str = "drift_tracking"


class DetectorGeometryMetadata(Frozen):
    distance_m: float = Field(gt=0)
    pixel_size_m: float = Field(gt=0)
    pixels: tuple[int, int]
    center_row: float
    center_col: float


class RasterMetadata(Frozen):
    x_um: list[float]
    """Pixel centres along the flown axis."""
    y_um: list[float]


class RockingMetadata(Frozen):
    points: int = Field(ge=1)
    step_deg: float = Field(gt=0)


class ChargeMetadata(Frozen):
    current_a: float
    voltage_limit_v: float


class SxdmMetadata(StartKey):
    """What the SXDM analysis needs to place every frame in Q and on the raster."""

    KEY: ClassVar[str] = "sxdm"
    geometry: DetectorGeometryMetadata
    roi: tuple[int, int, int, int]
    """(row start, column start, rows, columns) of the frames on the detector."""
    map: RasterMetadata
    rocking: RockingMetadata
    exposure_s: float = Field(gt=0)
    detector: str
    diffractometer: str
    cell_stream: str | None = None
    """The potentiostat's monitored stream (operando runs)."""
    mask_fraction: float = Field(0.2, ge=0, le=1)
    threshold_counts: float = 0.0
    maps_planned: int | None = None
    charge: ChargeMetadata | None = None
    alignment_stream: str | None = None


class EelsPassMetadata(Frozen):
    """One spectrometer pass along the line (its stream has one event: the whole line)."""

    dispersion_mev_per_channel: float = Field(gt=0)
    energy_offset_mev: float
    exposure_ms: float = Field(gt=0)
    """As planned; the saturation guard may shorten it, and the exposure taken is in the
    camera's configuration of the pass's stream (`<detector>-camera-exposure_ms`)."""
    frames: int = Field(1, ge=1)
    """Camera frames summed per spectrum, each of `exposure_ms`."""


class EelsLineMetadata(StartKey):
    """What the EELS analysis needs to place every spectrum of a grain-boundary line scan.

    Streams: `aloof` (one event per point spectrum in vacuum), `registration` (one HAADF
    line before each pass), and one stream per pass (`vibrational`, `valence_loss`,
    `core_loss`), each a single event whose camera data (`<detector>-camera-spectra`,
    pixels × channels counts, and `<detector>-camera-energy_axis_mev`) are in HDF5."""

    KEY: ClassVar[str] = "eels_line"
    detector: str
    """The STEM device's name: data keys are `<detector>-camera-…`, `<detector>-probe-…`."""
    field_of_view_nm: float = Field(gt=0)
    start_nm: tuple[float, float]
    end_nm: tuple[float, float]
    """The line as planned, scan frame (nm from the field of view's centre); the pass
    events carry the line actually scanned (`<detector>-probe-line_start_fraction`, …)
    after drift re-registration."""
    pixels: int = Field(ge=2)
    aloof_position_nm: tuple[float, float]
    passes: dict[str, EelsPassMetadata]
