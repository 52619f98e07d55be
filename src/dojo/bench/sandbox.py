"""``dojo bench sandbox``: a training step sandboxed (bubblewrap) beside the same step bare.

One run writes a small PyTorch training script (a convolutional net on random 96x48 images,
the size of a camera frame here) and runs it twice, once bare and once in the tenant sandbox
(:mod:`dojo.service.agent.sandbox`), alternating ``repeats`` times. Each run reports its median
step time after warm-up; the overhead is the sandboxed median over the bare one, minus one. The
start-up (bubblewrap, namespaces, Python and torch imports) is reported apart: it is paid once
a job, not once a step.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from dojo.bench.machine import machine_info

TARGET_OVERHEAD = 0.05  # issue 22: sandbox overhead <= 5% of a training step

_SCRIPT = """
import json, sys, time
import torch
torch.set_num_threads(1)
torch.manual_seed(0)
net = torch.nn.Sequential(
    torch.nn.Conv2d(3, 16, 3, stride=2), torch.nn.ReLU(), torch.nn.Conv2d(16, 32, 3, stride=2),
    torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 2))
opt = torch.optim.SGD(net.parameters(), lr=0.01)
x, y = torch.randn(32, 3, 48, 96), torch.randint(0, 2, (32,))
times = []
for step in range(int(sys.argv[1])):
    t = time.perf_counter()
    opt.zero_grad()
    torch.nn.functional.cross_entropy(net(x), y).backward()
    opt.step()
    times.append(time.perf_counter() - t)
print(json.dumps(times))
"""


def bench_sandbox(steps: int = 60, warmup: int = 10, repeats: int = 3) -> dict[str, Any]:
    """See the module doc; the result is what ``--json`` prints."""
    from dojo.service.agent import sandbox

    why = sandbox.available()
    if why is not None:
        raise RuntimeError(f"No sandbox here: {why}.")
    medians: dict[str, list[float]] = {"bare": [], "sandboxed": []}
    starts: dict[str, list[float]] = {"bare": [], "sandboxed": []}
    with tempfile.TemporaryDirectory(prefix="dojo-bench-sandbox-") as tmp:
        code, work = Path(tmp, "code"), Path(tmp, "work")
        code.mkdir()
        work.mkdir()
        (code / "train.py").write_text(_SCRIPT)
        out = Path(tmp, "out.json")
        for _ in range(repeats):
            for how in ("bare", "sandboxed"):
                tick = time.perf_counter()
                with open(out, "wb") as f:
                    if how == "bare":
                        subprocess.run(
                            [sys.executable, str(code / "train.py"), str(steps)],
                            stdout=f,
                            check=True,
                            cwd=work,
                        )
                    else:
                        r = sandbox.run(
                            [sys.executable, f"{sandbox.CODE}/train.py", str(steps)],
                            code,
                            work,
                            stdout=f.fileno(),
                        )
                        if r.returncode != 0:
                            raise RuntimeError(f"the sandboxed run failed (exit {r.returncode})")
                wall = time.perf_counter() - tick
                times = json.loads(out.read_text())
                medians[how].append(statistics.median(times[warmup:]))
                starts[how].append(wall - sum(times))
    bare, boxed = statistics.median(medians["bare"]), statistics.median(medians["sandboxed"])
    overhead = boxed / bare - 1.0
    return {
        "machine": machine_info(),
        "steps": steps,
        "warmup": warmup,
        "repeats": repeats,
        "bare_step_s": bare,
        "sandboxed_step_s": boxed,
        "overhead": overhead,
        "bare_startup_s": statistics.median(starts["bare"]),
        "sandboxed_startup_s": statistics.median(starts["sandboxed"]),
        "target": TARGET_OVERHEAD,
        "meets_target": overhead <= TARGET_OVERHEAD,
    }


def format_sandbox_bench(r: dict[str, Any]) -> str:
    return (
        f"training step: bare {r['bare_step_s'] * 1e3:.2f} ms, sandboxed "
        f"{r['sandboxed_step_s'] * 1e3:.2f} ms: overhead {r['overhead'] * 100:+.1f} % "
        f"(target <= {r['target'] * 100:.0f} %: {'met' if r['meets_target'] else 'missed'})\n"
        f"start-up (once a job): bare {r['bare_startup_s']:.2f} s, sandboxed "
        f"{r['sandboxed_startup_s']:.2f} s"
    )


def _bench(args: argparse.Namespace) -> int:
    result = bench_sandbox(steps=args.steps, repeats=args.repeats)
    print(json.dumps(result, indent=2) if args.json else format_sandbox_bench(result))
    return 0


def add_bench_command(bench: argparse._SubParsersAction) -> None:
    """Register ``sandbox`` under ``dojo bench``."""
    b = bench.add_parser(
        "sandbox", help="a training step in the tenant sandbox (bubblewrap) beside the same bare"
    )
    b.add_argument("--steps", type=int, default=60, help="training steps a run")
    b.add_argument("--repeats", type=int, default=3, help="bare and sandboxed runs, alternated")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=_bench)
