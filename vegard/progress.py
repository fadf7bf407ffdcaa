"""Progress lines for long runs: points done / total and an instrument-time ETA."""

from __future__ import annotations

import sys
from typing import TextIO

from event_model import DocumentRouter

from vegard.clock import InstrumentClock


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours:d}:{minutes:02d}:{seconds:02d}"


class ProgressPrinter(DocumentRouter):
    """Progress of the primary stream on stderr: first and last point, and every 5 %.

    A map has one point per scan line, so a series of maps has hundreds; a line
    per point would bury the messages that matter. A plan whose natural unit is
    not the primary event says so in its start document:
    ``progress = {"stream": name, "total": n or None, "unit": "map"}``.
    """

    def __init__(self, clock: InstrumentClock, stream: TextIO | None = None) -> None:
        super().__init__()
        self.clock = clock
        self.stream = stream if stream is not None else sys.stderr
        self._primary: set[str] = set()

    def start(self, doc):
        self._plan = doc.get("plan_name", "run")
        progress = doc.get("progress") or {}
        self._stream = progress.get("stream", "primary")
        self._unit = progress.get("unit", "point")
        self._total = progress.get("total", doc.get("num_points"))
        self._done = 0
        self._started_s = self.clock.now()

    def descriptor(self, doc):
        if doc.get("name") == self._stream:
            self._primary.add(doc["uid"])

    def event(self, doc):
        if doc["descriptor"] not in self._primary:
            return
        self._done += 1
        if not self._worth_printing():
            return
        elapsed_s = self.clock.now() - self._started_s
        line = f"[{self._plan}] {self._unit} {self._done}"
        if self._total:
            eta_s = elapsed_s / self._done * (self._total - self._done)
            line += f"/{self._total}"
            line += f" · instrument time {format_duration(elapsed_s)}"
            line += f" · ETA {format_duration(eta_s)} (instrument)"
        print(line, file=self.stream, flush=True)

    def _worth_printing(self) -> bool:
        total = self._total
        if not total or total <= 20 or self._done in (1, total):
            return True
        step = -(-total // 20)
        return self._done % step == 0

    def stop(self, doc):
        print(
            f"[{self._plan}] {doc.get('exit_status')} after {self._done} {self._unit}s, "
            f"instrument time {format_duration(self.clock.now() - self._started_s)}",
            file=self.stream,
            flush=True,
        )
