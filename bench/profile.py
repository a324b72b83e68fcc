"""Where a gateway process spends its CPU under load: samples it with py-spy (GIL-holding samples
only, so a thread waiting in C is not counted) while a closed-loop load runs, then prints the
share of samples under the frames that matter for the hot path.

    .venv/bin/python -m bench.profile --pid <worker pid> [--seconds 10] [--raw out.txt]
    .venv/bin/python -m bench.profile --summarize out.txt

Start the stack first (for example `python -m bench --keep` or `symbia-integrations serve`) and
drive load at it (`python -m bench` does both). py-spy needs ptrace rights on the pid (root here).
"""

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Frames whose inclusive share tells the story of one execute (docs/BENCHMARKS.md, "Profile").
FRAMES = {
    "FastStream subscriber pipeline": "SubscriberUsecase.process_message",
    "FastStream concurrency (anyio task group)": "ConcurrentMixin._serve_consume_queue",
    "direct lane (handlers/lane.py)": "DirectLane._serve",
    "endpoint (BusEndpoint)": "BusEndpoint.__call__",
    "execute pipeline (ExecuteService)": "ExecuteService.__call__",
    "upstream HTTP call (aiohttp)": "UpstreamTransport.send",
    "usage event (build + JetStream publish)": "UsagePipeline.observe",
    "usage store writer": "StoreWriter._run",
    "nats-py read loop": "Client._read_loop",
    "nats-py flusher (socket writes)": "Client._flusher",
    "request validation (pydantic)": "BaseModel.model_validate_json",
}


def frame_name(frame: str) -> str:
    return frame.split(" (")[0]


def summarize(raw: Path, top: int = 25) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        for name in {frame_name(f) for f in stack.split(";")}:
            inclusive[name] += int(count)
    if not total:
        return "no samples"
    lines = [f"{total} samples (GIL held)", f"{'share':>6}  frame"]
    for label, name in FRAMES.items():
        if inclusive[name]:
            lines.append(f"{inclusive[name] / total * 100:5.1f}%  {label} [{name}]")
    lines.append("-- top inclusive frames")
    for name, count in inclusive.most_common(top):
        lines.append(f"{count / total * 100:5.1f}%  {name}")
    return "\n".join(lines)


def record(pid: int, seconds: float, out: Path) -> None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    subprocess.run([py_spy, "record", "-p", str(pid), "-d", str(int(seconds)), "-r", "250", "-f", "raw", "--gil",
                    "-o", str(out)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pid", type=int)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--raw", type=Path)
    parser.add_argument("--summarize", type=Path)
    args = parser.parse_args()
    if args.summarize:
        print(summarize(args.summarize))
        return
    if not args.pid:
        parser.error("--pid or --summarize")
    out = args.raw or Path(tempfile.mkdtemp(prefix="profile-")) / "raw.txt"
    record(args.pid, args.seconds, out)
    print(f"raw samples: {out}")
    print(summarize(out))


if __name__ == "__main__":
    main()
