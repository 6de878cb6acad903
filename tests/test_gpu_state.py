"""``bench.gpu_state``: NVML readings of the SM clock while a kernel is timed (fakes on the CPU;
the real library in ``test_gpu.py``)."""

from __future__ import annotations

import ctypes
import time

from tilearena.bench.gpu_state import CLOCK_REASONS, Nvml, Reading, StateSampler, combine, summarise


def reading(at_s: float, clock: int, power: float | None = 600.0, reasons: int = 0) -> Reading:
    return Reading(
        at_s=at_s, sm_clock_mhz=clock, power_w=power, temperature_c=60 + clock // 1000, reasons=reasons
    )


def test_summarise_takes_medians_ranges_and_every_reason() -> None:
    assert summarise([]) is None
    state = summarise(
        [reading(0, 1980), reading(1, 1755, reasons=0x4), reading(2, 1740, power=None, reasons=0x20)]
    )
    assert state == {
        "sm_clock_mhz": 1755.0,
        "sm_clock_range_mhz": [1740, 1980],
        "power_w": 600.0,
        "temperature_c": 61,
        "clock_reasons": ["sw_power_cap", "sw_thermal"],
        "readings": 3,
    }


def test_combine_means_the_medians_and_joins_the_rest() -> None:
    assert combine([None, None]) is None
    first = summarise([reading(0, 1800, reasons=0x4)])
    second = summarise([reading(0, 1700, power=500.0, reasons=0x1)])
    joined = combine([first, None, second])
    assert joined["sm_clock_mhz"] == 1750.0 and joined["sm_clock_range_mhz"] == [1700, 1800]
    assert joined["power_w"] == 550.0 and joined["clock_reasons"] == ["idle", "sw_power_cap"]
    assert joined["readings"] == 2


class FakeNvml:
    """Answers a rising clock: 1000, 1001, ... MHz."""

    def __init__(self) -> None:
        self.count = 0

    def read(self) -> Reading:
        self.count += 1
        return reading(time.perf_counter(), 1000 + self.count)


def test_the_sampler_reads_while_the_block_runs_and_keeps_the_window_asked_for() -> None:
    nvml = FakeNvml()
    with StateSampler(nvml, interval_s=0.001) as sampler:
        time.sleep(0.03)
        middle = time.perf_counter()
        time.sleep(0.03)
    assert len(sampler.readings) >= 5 and nvml.count == len(sampler.readings)
    assert sampler.readings[-1].at_s >= middle  # one last reading after the block
    late = sampler.summary(from_s=middle)
    assert late["readings"] < len(sampler.readings)
    assert late["sm_clock_range_mhz"][0] > sampler.summary()["sm_clock_range_mhz"][0]
    # A window after every reading falls back to all of them rather than to nothing.
    assert sampler.summary(from_s=time.perf_counter() + 10)["readings"] == len(sampler.readings)


def test_without_nvml_the_sampler_records_nothing() -> None:
    with StateSampler(None) as sampler:
        pass
    assert sampler.readings == [] and sampler.summary() is None


class FakeLibrary:
    """NVML's C entry points as ctypes would call them: results through byref pointers."""

    def __init__(self, init: int = 0, by_uuid: int = 0) -> None:
        self.init, self.by_uuid, self.asked = init, by_uuid, []

    def nvmlInit_v2(self) -> int:
        return self.init

    def nvmlDeviceGetHandleByUUID(self, name: bytes, handle) -> int:
        self.asked.append(name)
        return self.by_uuid

    def nvmlDeviceGetHandleByIndex_v2(self, index, handle) -> int:
        self.asked.append(index.value)
        return 0

    def nvmlDeviceGetClockInfo(self, handle, kind: int, out) -> int:
        out._obj.value = 1755 if kind == 1 else 0
        return 0

    def nvmlDeviceGetPowerUsage(self, handle, out) -> int:
        out._obj.value = 612_345
        return 0

    def nvmlDeviceGetTemperature(self, handle, sensor: int, out) -> int:
        return 3  # NVML_ERROR_NOT_SUPPORTED: the reading goes on without it

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle, out) -> int:
        out._obj.value = 0x4 | 0x20
        return 0


def test_nvml_reads_through_the_library(monkeypatch) -> None:
    library = FakeLibrary()
    monkeypatch.setattr(ctypes, "CDLL", lambda name: library)
    nvml = Nvml.open("6f0e3c1a-aaaa-bbbb-cccc-0123456789ab", 3)
    assert nvml is not None and library.asked == [b"GPU-6f0e3c1a-aaaa-bbbb-cccc-0123456789ab"]
    got = nvml.read()
    assert (got.sm_clock_mhz, got.power_w, got.temperature_c) == (1755, 612.345, None)
    assert [CLOCK_REASONS[b] for b in CLOCK_REASONS if got.reasons & b] == ["sw_power_cap", "sw_thermal"]


def test_nvml_falls_back_to_the_index_and_to_none(monkeypatch) -> None:
    library = FakeLibrary(by_uuid=13)  # NVML_ERROR_NOT_FOUND
    monkeypatch.setattr(ctypes, "CDLL", lambda name: library)
    assert Nvml.open("GPU-x", 2) is not None and library.asked == [b"GPU-x", 2]
    monkeypatch.setattr(ctypes, "CDLL", lambda name: FakeLibrary(init=9))  # driver not loaded
    assert Nvml.open(None, 0) is None

    def missing(name: str):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", missing)
    assert Nvml.open(None, 0) is None
