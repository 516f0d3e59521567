"""Large models without allocating: time and resident-memory growth of summaries and memory estimates.

Each case runs in a fresh Python process; growth is its peak resident set after the
call minus the peak after imports and a small warm-up.

    .venv/bin/python bench/large_models.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import machine, markdown_table

ROOT = Path(__file__).resolve().parents[1]
CASES = [
    ("summarize", "gpt", {"preset": "gpt3-6.7b"}, None, {}),
    ("estimate_memory", "gpt", {"preset": "gpt3-6.7b"}, [2048], {"mode": "inference", "precision": "bf16"}),
    ("estimate_memory", "gpt", {"preset": "gpt3-6.7b"}, [2048], {"optimizer": "adamw"}),
    ("estimate_memory", "vit", {"preset": "vit_h_14"}, None, {"batch_size": 32, "optimizer": "adam"}),
]
SCRIPT = """
import json, resource, sys, time
from app.engine import estimate_memory, summarize
summarize("mlp"); estimate_memory("mlp")
fn, name, config, size, kwargs = json.loads(sys.argv[1])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
report = (summarize if fn == "summarize" else estimate_memory)(name, config, size, **kwargs)
took = time.perf_counter() - start
grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
figure = report.totals.params if fn == "summarize" else report.peak_bytes
print(json.dumps({"seconds": took, "grew_kib": grew, "figure": figure}))
"""


def main() -> None:
    rows = []
    for fn, name, config, size, kwargs in CASES:
        result = subprocess.run(
            [sys.executable, "-c", SCRIPT, json.dumps([fn, name, config, size, kwargs])],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        data = json.loads(result.stdout.strip().splitlines()[-1])
        what = f"{data['figure']:,} params" if fn == "summarize" else f"peak {data['figure'] / 2**30:,.1f} GiB"
        options = "".join(f", {k}={v}" for k, v in kwargs.items())
        label = f"{fn}({name}, {config['preset']}{options})"
        rows.append([label, what, f"{data['seconds']:.2f} s", f"{data['grew_kib'] / 1024:,.0f} MiB"])
        print(f"  {label}: done", file=sys.stderr)
    print(f"Machine: {machine()}\n")
    print(markdown_table(["Call", "Result", "Time", "Resident memory growth"], rows))


if __name__ == "__main__":
    main()
