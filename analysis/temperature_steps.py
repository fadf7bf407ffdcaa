"""Live (and replayed) analysis of a `temperature_steps` run.

Only documents go in, so the live run and `vegard replay` give the same result.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from event_model import DocumentRouter

from .figure_process import FigureDrawer
from .settling import summarise_step


class TemperatureStepsAnalysis(DocumentRouter):
    """Per-step settled temperature and settling time; a trace figure at the end."""

    def __init__(self, figures_directory_for: Callable[[str], Path] | None = None) -> None:
        """`figures_directory_for(run_uid)` says where figures go (none if not given)."""
        super().__init__()
        self.figures_directory_for = figures_directory_for
        self._figures = FigureDrawer()
        self.result: dict[str, Any] | None = None
        self._stream_of: dict[str, str] = {}
        self._steps: list[dict[str, Any]] = []
        self._monitor_times_s: list[float] = []
        self._monitor_temperatures_k: list[float] = []
        self._monitor_heater_percent: list[float] = []
        self._prefix = "temperature_stage"
        self._plan_args: dict[str, Any] = {}

    def start(self, doc):
        self._prefix = doc.get("temperature_stage", self._prefix)
        self._plan_args = dict(doc.get("plan_args", {}))
        self._monitor_stream = doc["monitor_stream"]  # named by the plan, not repeated here
        self._uid = doc["uid"]

    def descriptor(self, doc):
        self._stream_of[doc["uid"]] = doc.get("name", "primary")

    def event(self, doc):
        stream = self._stream_of.get(doc["descriptor"])
        data, stamps = doc["data"], doc["timestamps"]
        key = f"{self._prefix}-temperature_k"
        if stream == self._monitor_stream:
            self._monitor_times_s.append(stamps[key])
            self._monitor_temperatures_k.append(data[key])
            self._monitor_heater_percent.append(data[f"{self._prefix}-heater_output_percent"])
        elif stream == "primary":
            self._steps.append({"data": data, "time_s": stamps[key]})

    def stop(self, doc):
        tolerance_k = float(self._plan_args.get("settle_tolerance_k", 0.0))
        hold_s = float(self._plan_args.get("settle_time_s", 0.0))
        times = np.asarray(self._monitor_times_s)
        temperatures = np.asarray(self._monitor_temperatures_k)
        p = self._prefix
        steps = [
            summarise_step(
                setpoint_k=step["data"][f"{p}-setpoint_k"],
                temperature_k=step["data"][f"{p}-temperature_k"],
                sample_temperature_k=step["data"][f"{p}-sample_temperature_k"],
                settling_time_s=step["data"][f"{p}-settling_time_s"],
                heater_output_percent=step["data"][f"{p}-heater_output_percent"],
                settle_tolerance_k=tolerance_k,
                step_time_s=step["time_s"],
                hold_time_s=hold_s,
                monitor_times_s=times,
                monitor_temperatures_k=temperatures,
            ).as_dict()
            for step in self._steps
        ]
        self.result = {
            "settle_tolerance_k": tolerance_k,
            "settle_time_s": hold_s,
            "steps": steps,
            "settled_temperature_k_by_setpoint_k": {
                f"{s['setpoint_k']:g}": s["settled_temperature_k"] for s in steps
            },
            "settling_time_s_by_setpoint_k": {
                f"{s['setpoint_k']:g}": s["settling_time_s"] for s in steps
            },
            "all_within_tolerance": bool(steps) and all(s["within_tolerance"] for s in steps),
            "monitor_points": len(self._monitor_times_s),
            "exit_status": doc.get("exit_status"),
            "figures": self._write_figure(steps),
        }

    def _write_figure(self, steps: list[dict[str, Any]]) -> list[str]:
        if self.figures_directory_for is None or not self._monitor_times_s:
            return []
        from .figures import temperature_trace_figure

        path = Path(self.figures_directory_for(self._uid)) / "temperature_steps.png"
        self._figures.draw(
            temperature_trace_figure,
            path,
            times_s=np.asarray(self._monitor_times_s),
            temperatures_k=np.asarray(self._monitor_temperatures_k),
            heater_output_percent=np.asarray(self._monitor_heater_percent),
            setpoints_k=[s["setpoint_k"] for s in steps],
            step_times_s=[step["time_s"] for step in self._steps],
        )
        return [str(drawn) for drawn in self._figures.finished()]
