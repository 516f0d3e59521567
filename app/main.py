"""The ASGI app: ``uvicorn app.main:app``."""

from __future__ import annotations

import torch
from fastapi import FastAPI

from . import __version__

app = FastAPI(title="Layerscope", version=__version__)


@app.get("/api/health")
def health() -> dict[str, str]:
    return {"status": "ok", "torch": torch.__version__, "device": "cuda:0" if torch.cuda.is_available() else "cpu"}
