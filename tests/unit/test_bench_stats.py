"""The pure parts of the benchmark harness (bench/stats.py, bench/loadgen.py's split/merge): the
numbers `make bench` reports must not silently change meaning."""

import math

import pytest

from bench import stats
from bench.loadgen import merge, split


def test_percentile_is_nearest_rank():
    samples = list(range(1, 101))  # 1..100
    assert stats.percentile(samples, 0.50) == 50
    assert stats.percentile(samples, 0.99) == 99
    assert stats.percentile(samples, 1.0) == 100
    assert stats.percentile(samples, 0.0) == 1
    assert stats.percentile(samples, 0.07) == 7  # 0.07 * 100 is 7.000000000000001 in floats
    assert stats.percentile([3.0, 1.0, 2.0, 4.0], 0.5) == 2.0  # unsorted input, even count: lower middle
    assert stats.percentile([5.0], 0.99) == 5.0


def test_percentile_edge_cases():
    assert math.isnan(stats.percentile([], 0.5))
    with pytest.raises(ValueError):
        stats.percentile([1.0], 1.5)


def test_summarize():
    s = stats.summarize([1.0, 2.0, 3.0, 10.0])
    assert (s.count, s.p50, s.p99, s.mean) == (4, 2.0, 10.0, 4.0)
    assert s.as_dict() == {"count": 4, "p50_ms": 2.0, "p99_ms": 10.0, "mean_ms": 4.0}
    assert stats.summarize([]).count == 0


def test_added_latency_is_gateway_minus_direct_at_the_same_percentile():
    direct = [0.2] * 50 + [0.3] * 50
    gateway = [1.9] * 50 + [2.5] * 49 + [9.0]
    assert stats.added_latency(gateway, direct) == pytest.approx(1.9 - 0.2)
    assert stats.added_latency(gateway, direct, 0.99) == pytest.approx(2.5 - 0.3)


def steps(*pairs):
    return [stats.Step(c, rps) for c, rps in pairs]


def test_keep_stepping_while_throughput_improves():
    assert stats.keep_stepping([])
    assert stats.keep_stepping(steps((1, 400)))
    assert stats.keep_stepping(steps((1, 400), (4, 800), (16, 1000)))


def test_stop_stepping_when_throughput_stops_improving():
    assert not stats.keep_stepping(steps((1, 400), (4, 800), (16, 820)))  # +2.5 % < 5 %
    assert not stats.keep_stepping(steps((1, 400), (4, 800), (16, 700)))  # worse
    # a drop, then a step that beats the drop but not the best: still flat
    assert not stats.keep_stepping(steps((1, 400), (4, 800), (16, 700), (32, 810)), patience=2)
    # patience: one flat step is tolerated, two are not
    assert stats.keep_stepping(steps((1, 400), (4, 800), (16, 810)), patience=2)
    assert not stats.keep_stepping(steps((1, 400), (4, 800), (16, 810), (32, 790)), patience=2)
    # improving again resets the count
    assert stats.keep_stepping(steps((1, 400), (4, 800), (16, 810), (32, 1000)), patience=2)
    assert stats.keep_stepping(steps((1, 400), (4, 430)), min_gain=0.05)
    assert not stats.keep_stepping(steps((1, 400), (4, 410)), min_gain=0.05)
    with pytest.raises(ValueError):
        stats.keep_stepping([], patience=0)


def test_best_step():
    assert stats.best_step([]) is None
    assert stats.best_step(steps((1, 400), (16, 900), (32, 890))) == stats.Step(16, 900)
    assert stats.best_step(steps((4, 900), (16, 900))) == stats.Step(4, 900)  # tie: lower concurrency


def test_cpu_per_request():
    assert stats.cpu_per_request_ms(10.0, 11.5, 1000) == pytest.approx(1.5)
    assert math.isnan(stats.cpu_per_request_ms(1.0, 2.0, 0))


def test_growth_counts_from_the_ten_percent_mark():
    samples = [(0, 80.0), (500, 95.0), (1000, 100.0), (5000, 101.0), (10000, 102.5)]
    assert stats.growth(samples, 10000) == (100.0, 102.5, 2.5)
    assert stats.growth([(0, 80.0), (100, 90.0)], 10000) == (90.0, 90.0, 0.0)  # never reached: last sample
    assert all(math.isnan(x) for x in stats.growth([], 10))


def test_verdict():
    assert stats.verdict(1.5, 2.0, higher_is_better=False) == "ok"
    assert stats.verdict(2.5, 2.0, higher_is_better=False) == "MISS"
    assert stats.verdict(1200, 1000, higher_is_better=True) == "ok"
    assert stats.verdict(900, 1000, higher_is_better=True) == "MISS"
    assert stats.verdict(float("nan"), 1, True) == "n/a"


def test_proc_parsers():
    stat = "4242 (python -m (x) y) S 1 2 3 4 5 6 7 8 9 10 250 150 0 0 20 0 1 0 100 0 0"
    assert stats.parse_stat_cpu_s(stat, clk_tck=100) == pytest.approx(4.0)
    status = "Name:\tpython\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n"
    assert stats.parse_status_kb(status, "VmRSS") == 102400
    assert stats.parse_status_kb(status, "VmHWM") == 204800
    assert stats.parse_status_kb(status, "VmSwap") == 0


def test_proc_readers_on_this_process():
    import os

    rss, peak = stats.process_memory_mb(os.getpid())
    assert 0 < rss <= peak
    assert stats.process_cpu_s(os.getpid()) > 0
    assert math.isnan(stats.process_memory_mb(2 ** 22 + 12345)[0])  # no such pid


def test_split_and_merge():
    assert split(64, 1) == [64]
    assert split(5, 2) == [3, 2]
    assert split(1, 2) == [1, 0]
    a = {"latencies": [[1.0, 2.0]], "errors": 1, "error_samples": ["x"], "completed": 10, "measured": 2,
         "wall_s": 2.0, "rps": 100.0, "cpu_s": 1.0}
    b = {"latencies": [[3.0]], "errors": 0, "error_samples": [], "completed": 5, "measured": 1,
         "wall_s": 1.0, "rps": 50.0, "cpu_s": 0.5}
    m = merge([a, b])
    assert m["latencies"] == [[1.0, 2.0, 3.0]]
    assert (m["errors"], m["completed"], m["measured"], m["rps"], m["cpu_s"]) == (1, 15, 3, 150.0, 1.5)
    assert m["cpu_pct"] == pytest.approx(100.0)  # 50 % of a core each
    with pytest.raises(RuntimeError):
        merge([{"fatal": "boom"}])
