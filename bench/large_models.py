"""Large models without allocating: time and resident-memory growth of summaries and memory estimates.

Each case runs in a fresh Python process; growth is its peak resident set after the
call minus the peak after imports and a small warm-up (GPT-2 through transformers,
so transformers' own import is not counted; a model type's first use still is).
The second table is every Hugging Face preset: its summary, an inference pass and
an AdamW training step in bf16, at batch 1 and the preset's default input.

    .venv/bin/python bench/large_models.py [--presets-only]
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
summarize("mlp"); estimate_memory("mlp"); summarize("huggingface", {"preset": "gpt2"}, [8])
fn, name, config, size, kwargs = json.loads(sys.argv[1])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
report = (summarize if fn == "summarize" else estimate_memory)(name, config, size, **kwargs)
took = time.perf_counter() - start
grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
figure = report.totals.params if fn == "summarize" else report.peak_bytes
print(json.dumps({"seconds": took, "grew_kib": grew, "figure": figure}))
"""


def measure(fn: str, name: str, config: dict, size: list[int] | None, kwargs: dict) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps([fn, name, config, size, kwargs])],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def presets_table() -> str:
    import models

    rows = []
    for preset in models.get_architecture("huggingface").presets:
        config = {"preset": preset.name}
        summary = measure("summarize", "huggingface", config, None, {})
        inference = measure("estimate_memory", "huggingface", config, None, {"mode": "inference", "precision": "bf16"})
        training = measure("estimate_memory", "huggingface", config, None, {"optimizer": "adamw", "precision": "bf16"})
        grew = max(summary["grew_kib"], inference["grew_kib"], training["grew_kib"]) / 1024
        rows.append(
            [
                preset.name,
                f"{summary['figure']:,}",
                f"{summary['seconds']:.2f} s",
                f"{inference['figure'] / 2**30:,.1f} GiB in {inference['seconds']:.1f} s",
                f"{training['figure'] / 2**30:,.1f} GiB in {training['seconds']:.1f} s",
                f"{grew:,.0f} MiB",
            ]
        )
        print(f"  {preset.name}: done", file=sys.stderr)
    headers = ["Preset", "Params", "Summary", "Inference peak (bf16)", "AdamW step peak (bf16)", "Most growth"]
    return markdown_table(headers, rows)


def main() -> None:
    if "--presets-only" in sys.argv:
        print(f"Machine: {machine()}; each call in a fresh process; batch 1, the preset's default input\n")
        print(presets_table())
        return
    rows = []
    for fn, name, config, size, kwargs in CASES:
        data = measure(fn, name, config, size, kwargs)
        what = f"{data['figure']:,} params" if fn == "summarize" else f"peak {data['figure'] / 2**30:,.1f} GiB"
        options = "".join(f", {k}={v}" for k, v in kwargs.items())
        label = f"{fn}({name}, {config['preset']}{options})"
        rows.append([label, what, f"{data['seconds']:.2f} s", f"{data['grew_kib'] / 1024:,.0f} MiB"])
        print(f"  {label}: done", file=sys.stderr)
    print(f"Machine: {machine()}\n")
    print(markdown_table(["Call", "Result", "Time", "Resident memory growth"], rows))
    print("\nHugging Face presets: batch 1, the preset's default input, each call in a fresh process\n")
    print(presets_table())


if __name__ == "__main__":
    main()
