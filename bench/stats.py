"""Pure helpers of the benchmark harness (`python -m bench`): percentiles, added latency,
saturation detection, CPU per request, and reading CPU time and RSS of a process from /proc.
No I/O apart from the /proc readers at the bottom; tests/unit/test_bench_stats.py covers them."""

import math
import os
from dataclasses import dataclass
from pathlib import Path


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile, q in [0, 1]: the smallest sample with at least q of the samples at
    or below it (p50 of [1, 2, 3, 4] is 2, p99 of 100 samples is the 99th smallest). NaN if empty."""
    if not 0 <= q <= 1:
        raise ValueError(f"q must be within [0, 1], got {q}")
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = max(1, math.ceil(q * len(ordered) - 1e-9))  # 1e-9: 0.07 * 100 is 7.000000000000001
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True)
class Summary:
    count: int
    p50: float
    p99: float
    mean: float

    def as_dict(self) -> dict:
        return {"count": self.count, "p50_ms": self.p50, "p99_ms": self.p99, "mean_ms": self.mean}


def summarize(samples: list[float]) -> Summary:
    if not samples:
        return Summary(0, float("nan"), float("nan"), float("nan"))
    return Summary(len(samples), percentile(samples, 0.50), percentile(samples, 0.99), sum(samples) / len(samples))


def added_latency(gateway: list[float], direct: list[float], q: float = 0.50) -> float:
    """What the gateway adds at percentile q: gateway's percentile minus the direct path's, both
    measured at concurrency 1 under the same conditions (interleaved)."""
    return percentile(gateway, q) - percentile(direct, q)


@dataclass(frozen=True)
class Step:
    concurrency: int
    rps: float


def keep_stepping(history: list[Step], min_gain: float = 0.05, patience: int = 1) -> bool:
    """After the steps run so far (in order), is another, higher concurrency worth running?
    No once `patience` consecutive steps improved on the best throughput before them by less
    than `min_gain` (5 %): throughput stopped improving."""
    if patience < 1:
        raise ValueError("patience must be at least 1")
    best, flat = 0.0, 0
    for step in history:
        if step.rps > best * (1 + min_gain):
            flat = 0
        else:
            flat += 1
        best = max(best, step.rps)
    return flat < patience


def best_step(history: list[Step]) -> Step | None:
    """The step with the highest throughput (the lower concurrency on a tie)."""
    best = None
    for step in history:
        if best is None or step.rps > best.rps:
            best = step
    return best


def cpu_per_request_ms(cpu_before_s: float, cpu_after_s: float, requests: int) -> float:
    """CPU seconds (user + system) spent between two samples, per request, in milliseconds."""
    if requests <= 0:
        return float("nan")
    return (cpu_after_s - cpu_before_s) / requests * 1000


def growth(samples: list[tuple[int, float]], total: int, mark: float = 0.10) -> tuple[float, float, float]:
    """RSS growth over a soak: samples are (requests done, RSS MB) in time order. Returns (RSS at
    the first sample with at least `mark` of `total` requests done, RSS at the last sample, the
    difference), so that warm-up allocation before the mark is not counted as a leak."""
    if not samples:
        return float("nan"), float("nan"), float("nan")
    start = next((rss for done, rss in samples if done >= mark * total), samples[-1][1])
    end = samples[-1][1]
    return start, end, end - start


def verdict(value: float, target: float, higher_is_better: bool) -> str:
    if value != value:  # NaN
        return "n/a"
    ok = value >= target if higher_is_better else value <= target
    return "ok" if ok else "MISS"


# --- /proc readers ---------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def parse_stat_cpu_s(stat: str, clk_tck: int = CLK_TCK) -> float:
    """utime + stime in seconds from the text of /proc/<pid>/stat (the command name may hold
    spaces and parentheses, so split after the last ')')."""
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / clk_tck


def parse_status_kb(status: str, key: str) -> int:
    """A `Key:   1234 kB` value of /proc/<pid>/status in kB (0 when absent)."""
    for line in status.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def process_cpu_s(pid: int) -> float:
    try:
        return parse_stat_cpu_s(Path(f"/proc/{pid}/stat").read_text())
    except (OSError, IndexError, ValueError):
        return float("nan")


def process_memory_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS = VmHWM) of a process in MB; NaN once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return float("nan"), float("nan")
    return parse_status_kb(status, "VmRSS") / 1024, parse_status_kb(status, "VmHWM") / 1024
