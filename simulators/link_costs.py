"""What a real instrument's link costs, in instrument time: the turnaround of each command
and the time its bytes take on the wire.

On a virtual clock nothing costs time unless a model says so, so each emulator declares
what its real link costs (`LinkCost`) and the server sleeps that long on the clock before
it answers a line (or, for a line without a query, before it reads the next one). The
values are simulator parameters like any other (`<instrument>.link_turnaround_s`,
`<instrument>.link_bytes_per_s`), listed by `vegard sim params` and set from a profile or
`--set`; measure your own instrument and put its figures in the profile.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .parameters import Parameter

LINK_PARAMETER_NAMES = frozenset({"link_turnaround_s", "link_bytes_per_s"})


@dataclass(frozen=True)
class LinkCost:
    """Defaults of one instrument's link and where they come from."""

    turnaround_s: float
    """From the last byte of a command to the first byte of its reply (instrument-side
    parsing and the network's round trip)."""
    bytes_per_s: float
    """Payload rate of the link (serial: baud / 10 bits per byte)."""
    source: str

    def parameters(self) -> tuple[Parameter, ...]:
        return (
            Parameter("link_turnaround_s", self.turnaround_s, "s", 0.0, 10.0,
                      f"link cost: instrument time per command line ({self.source})"),
            Parameter("link_bytes_per_s", self.bytes_per_s, "B/s", 1.0, 1e11,
                      f"link cost: bytes per second on the wire ({self.source})"),
        )


@dataclass(frozen=True)
class LinkCosts:
    """The link cost of one line, from the instrument's parameters."""

    turnaround_s: float
    bytes_per_s: float

    @classmethod
    def from_parameters(cls, values: Mapping[str, float]) -> LinkCosts:
        return cls(float(values["link_turnaround_s"]), float(values["link_bytes_per_s"]))

    def line_s(self, request_bytes: int, reply_bytes: int) -> float:
        """Instrument seconds between receiving a line and the reply's last byte."""
        return self.turnaround_s + (request_bytes + reply_bytes) / self.bytes_per_s


FREE_LINK = LinkCosts(0.0, float("inf"))
