"""The GPU's clocks, power and temperature while it is being timed, read through NVML.

A compute-bound GEMM on the H100 runs at whatever SM clock its power limit leaves, and that
clock drifts over minutes as the card warms: at 64c3713 the bench timed its own large GEMMs
3-8 % apart a few minutes apart (reports/h100/NOTES.md, Session 8).  Each measurement records
the clock it ran at, to tell such drift from a change in the kernel.  Measured at 697e436
(Session 11): large GEMMs ran at 1170-1980 MHz under the power cap, but NVML's median clock over
a measurement explained little of their run-to-run spread (correlation -0.25 between the log
time and log clock ratios).  Why is not measured; one guess is that NVML's clock is a coarse
average that misses the power controller's faster moves.

Only queries: nothing here sets a clock, a limit or a mode (the device's METHOD.md).  NVML is
reached with ctypes, so no extra package is needed; where it cannot be loaded (no driver, a
CPU machine) every reading is None and timing goes on without it.
"""

from __future__ import annotations

import ctypes
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: nvmlClocksEventReasons bits (nvml.h): why the SM clock is below its maximum.
CLOCK_REASONS: dict[int, str] = {
    0x1: "idle",
    0x2: "applications_clocks",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal",
    0x40: "hw_thermal",
    0x80: "hw_power_brake",
    0x100: "display_clocks",
}
_NVML_CLOCK_SM = 1
_NVML_TEMPERATURE_GPU = 0


@dataclass(frozen=True)
class Reading:
    at_s: float  # time.perf_counter() when read
    sm_clock_mhz: int
    power_w: float | None
    temperature_c: int | None
    reasons: int  # CLOCK_REASONS bits


class Nvml:
    """One GPU's NVML handle; ``open`` returns None where NVML is missing."""

    def __init__(self, library: Any, handle: ctypes.c_void_p) -> None:
        self._library, self._handle = library, handle
        self._reasons_fn = getattr(library, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
            library, "nvmlDeviceGetCurrentClocksThrottleReasons", None
        )

    @classmethod
    def open(cls, uuid: str | None = None, index: int = 0) -> Nvml | None:
        """The GPU with this UUID (as torch reports it, with or without "GPU-"), else ``index``."""
        try:
            library = ctypes.CDLL("libnvidia-ml.so.1")
            if library.nvmlInit_v2() != 0:
                return None
            handle = ctypes.c_void_p()
            found = 1
            if uuid:
                name = uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}"
                found = library.nvmlDeviceGetHandleByUUID(name.encode(), ctypes.byref(handle))
            if found != 0:
                found = library.nvmlDeviceGetHandleByIndex_v2(ctypes.c_uint(index), ctypes.byref(handle))
            return cls(library, handle) if found == 0 else None
        except (OSError, AttributeError):
            return None

    def read(self) -> Reading | None:
        clock, milliwatts, celsius = ctypes.c_uint(), ctypes.c_uint(), ctypes.c_uint()
        reasons = ctypes.c_ulonglong()
        lib, handle = self._library, self._handle
        if lib.nvmlDeviceGetClockInfo(handle, _NVML_CLOCK_SM, ctypes.byref(clock)) != 0:
            return None
        power_ok = lib.nvmlDeviceGetPowerUsage(handle, ctypes.byref(milliwatts)) == 0
        temperature_ok = (
            lib.nvmlDeviceGetTemperature(handle, _NVML_TEMPERATURE_GPU, ctypes.byref(celsius)) == 0
        )
        reasons_ok = self._reasons_fn is not None and self._reasons_fn(handle, ctypes.byref(reasons)) == 0
        return Reading(
            at_s=time.perf_counter(),
            sm_clock_mhz=int(clock.value),
            power_w=milliwatts.value / 1000.0 if power_ok else None,
            temperature_c=int(celsius.value) if temperature_ok else None,
            reasons=int(reasons.value) if reasons_ok else 0,
        )


_OPENED: dict[str, Nvml | None] = {}


def nvml_for_current_device() -> Nvml | None:
    """NVML for torch's current CUDA device (opened once per device), or None."""
    import torch

    index = torch.cuda.current_device()
    properties = torch.cuda.get_device_properties(index)
    uuid = str(getattr(properties, "uuid", "") or "")
    key = uuid or str(index)
    if key not in _OPENED:
        _OPENED[key] = Nvml.open(uuid or None, index)
    return _OPENED[key]


def summarise(readings: Sequence[Reading]) -> dict[str, Any] | None:
    """Median SM clock and power, the range of the clock, the hottest temperature and every
    reason the clock was held down, over ``readings`` (None if there are none)."""
    if not readings:
        return None
    clocks = [r.sm_clock_mhz for r in readings]
    powers = [r.power_w for r in readings if r.power_w is not None]
    temperatures = [r.temperature_c for r in readings if r.temperature_c is not None]
    seen = 0
    for r in readings:
        seen |= r.reasons
    return {
        "sm_clock_mhz": float(statistics.median(clocks)),
        "sm_clock_range_mhz": [min(clocks), max(clocks)],
        "power_w": round(statistics.median(powers), 1) if powers else None,
        "temperature_c": max(temperatures) if temperatures else None,
        "clock_reasons": [name for bit, name in CLOCK_REASONS.items() if seen & bit],
        "readings": len(readings),
    }


def combine(states: Sequence[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Several measurements' summaries as one: the mean of their medians, the union of the rest."""
    known = [s for s in states if s]
    if not known:
        return None
    powers = [s["power_w"] for s in known if s.get("power_w") is not None]
    temperatures = [s["temperature_c"] for s in known if s.get("temperature_c") is not None]
    return {
        "sm_clock_mhz": round(statistics.fmean(s["sm_clock_mhz"] for s in known), 1),
        "sm_clock_range_mhz": [
            min(s["sm_clock_range_mhz"][0] for s in known),
            max(s["sm_clock_range_mhz"][1] for s in known),
        ],
        "power_w": round(statistics.fmean(powers), 1) if powers else None,
        "temperature_c": max(temperatures) if temperatures else None,
        "clock_reasons": sorted({name for s in known for name in s.get("clock_reasons", [])}),
        "readings": sum(int(s.get("readings", 0)) for s in known),
    }


class StateSampler:
    """Reads NVML every ``interval_s`` in a background thread while the ``with`` block runs.

    The reads are ctypes calls, which release the GIL, and the main thread waits in
    ``torch.cuda.synchronize`` (also without the GIL) for most of a measurement, so sampling
    costs the timed work nothing; 5 ms keeps the thread off the CPU while samples are queued.
    """

    def __init__(self, nvml: Nvml | None, interval_s: float = 0.005) -> None:
        self.nvml, self.interval_s = nvml, interval_s
        self.readings: list[Reading] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _poll(self) -> None:
        assert self.nvml is not None
        while True:
            reading = self.nvml.read()
            if reading is not None:
                self.readings.append(reading)
            if self._stop.wait(self.interval_s):
                return

    def __enter__(self) -> StateSampler:
        if self.nvml is not None:
            self._thread = threading.Thread(target=self._poll, name="tilearena-nvml", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            last = self.nvml.read() if self.nvml is not None else None
            if last is not None:
                self.readings.append(last)

    def summary(self, from_s: float | None = None) -> dict[str, Any] | None:
        """Over the readings taken at or after ``from_s`` (perf_counter seconds; when the timed
        work began on the GPU), or all of them if none were."""
        window = [r for r in self.readings if from_s is None or r.at_s >= from_s]
        return summarise(window or self.readings)
