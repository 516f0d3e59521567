"""Feature-map requests: latency and response size, against the bare forward pass they wrap.

Runs POST /api/feature-maps in-process (FastAPI's TestClient) for a few models on a
bundled photograph, with the model cache warm and cold, beside a plain
``model(x)`` of the same model on the same input.

    .venv/bin/python bench/feature_maps_speed.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import models
from app.main import create_app
from app.settings import Settings
from bench._common import machine, markdown_table, median_seconds

CASES = [
    ("resnet", {"depth": 18}, "ResNet-18, 6 stage outputs"),
    ("alexnet", None, "AlexNet, 5 convs + 3 pools"),
    ("lenet5", {"variant": "modern"}, "LeNet-5 (trained), 5 layers"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    from fastapi.testclient import TestClient

    app = create_app(Settings(access_log=False))
    rows = []
    with TestClient(app) as client:
        for name, config, label in CASES:
            body = {"architecture": name, "config": config or {}, "sample": "cat"}
            if name == "lenet5":
                body["weights"] = "trained"
            sizes = []

            def request(body=body, sizes=sizes) -> None:
                response = client.post("/api/feature-maps", json=body)
                response.raise_for_status()
                sizes.append(len(response.content))

            warm = median_seconds(request, args.repeats, warmup=1)
            cold_times = []
            for _ in range(3):
                app.state.service.real._models.clear()
                start = time.perf_counter()
                request()
                cold_times.append(time.perf_counter() - start)
            model = models.build_model(name, config).eval()
            arch = models.get_architecture(name)
            x = torch.randn(1, *arch.default_input(arch.parse_config(config)))

            def forward(model=model, x=x) -> None:
                with torch.inference_mode():
                    model(x)

            bare = median_seconds(forward, args.repeats)
            rows.append(
                [
                    label,
                    f"{warm * 1000:,.0f} ms",
                    f"{statistics.median(cold_times) * 1000:,.0f} ms",
                    f"{bare * 1000:,.1f} ms",
                    f"{statistics.median(sizes) / 2**20:,.2f} MiB",
                ]
            )
            print(f"  {label}: done", file=sys.stderr)
    print(f"Machine: {machine()}; median of {args.repeats} requests\n")
    headers = ["Request", "Feature maps (model cached)", "Feature maps (cold)", "Bare forward", "Response"]
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()
