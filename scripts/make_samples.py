"""Make the bundled sample photographs from scikit-image's data folder (run once, by a developer).

    pip download --no-deps scikit-image -d /tmp/skimage && unzip /tmp/skimage/*.whl 'skimage/data/*' -d /tmp/skimage
    python scripts/make_samples.py /tmp/skimage/skimage/data

Each photograph is public domain or CC0 (see static/samples/CREDITS.md); it is
resized so its short side is 320 pixels and saved as a JPEG of about 30 KB.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

OUT = Path(__file__).resolve().parents[1] / "static" / "samples"
SOURCES = {"cat": "chelsea.png", "coffee": "coffee.png", "astronaut": "astronaut.png", "rocket": "rocket.jpg"}


def main(data_dir: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, filename in SOURCES.items():
        image = Image.open(Path(data_dir) / filename).convert("RGB")
        scale = 320 / min(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
        image.save(OUT / f"{name}.jpg", quality=85, optimize=True)
        print(f"{name}.jpg {image.size}")


if __name__ == "__main__":
    main(sys.argv[1])
