"""Smoke test of `python -m bench` (e2e: it starts the mock, nats-server, api and a worker as
processes): tiny counts, HTTP and NATS only, ~10 s. Checks that the harness runs end to end,
that the gateway answered every request and that the report and the JSON hold the figures."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_bench_quick_http_nats(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--scenarios", "direct,http,nats", "--requests", "20",
         "--steps", "1,4", "--duration", "0.3", "--warmup", "0.1", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "execute chat over HTTP" in proc.stdout and "execute chat over NATS" in proc.stdout
    data = json.loads(out.read_text())
    for name in ("http", "nats"):
        scenario = data["scenarios"][name]
        assert scenario["latency"]["errors"] == 0, scenario["latency"]["error_samples"]
        assert scenario["latency"]["gateway"]["count"] == 20
        assert scenario["throughput"]["best"]["rps"] > 0
        assert all(step["errors"] == 0 for step in scenario["throughput"]["steps"])
        assert scenario["throughput"]["best"]["cpu_ms_per_req"] > 0
    assert data["scenarios"]["direct"]["throughput"]["best"]["rps"] > 0
    assert 0 < data["memory"]["idle_worker_rss_mb"] <= data["memory"]["worker_peak_mb"]
