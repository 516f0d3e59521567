"""Service settings, read from environment variables (prefix ``LAYERSCOPE_``) by pydantic-settings.

Tests override ``get_settings`` through FastAPI's dependency overrides; the
README's settings table lists every field.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything an operator can set, with its default."""

    model_config = SettingsConfigDict(env_prefix="LAYERSCOPE_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address the server binds to (0.0.0.0 in the container).")
    port: int = Field(8000, ge=1, le=65535, description="Port the server listens on.")
    workers: int = Field(1, ge=1, le=64, description="Worker processes (the engine is CPU-bound).")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Device for real runs (measured memory, feature maps, attention); auto = cuda when present."
    )
    memory_budget_mb: int = Field(
        2048, ge=16, le=1_048_576, description="Real runs whose estimated peak exceeds this are refused with 413."
    )
    real_run_timeout_s: float = Field(
        20.0, gt=0, le=3600, description="How long a real run waits for the device before a 503."
    )
    engine_workers: int = Field(
        2,
        ge=1,
        le=64,
        description="Engine processes for allocation-free work (summaries, estimates) per server worker; real runs "
        "have one more of their own, so quick requests never wait behind them.",
    )
    engine_isolation: Literal["process", "thread"] = Field(
        "process",
        description="process: engine work in worker processes, stopped at the deadline; thread: in the server "
        "process (debugging only: a deadline then ends the wait, not the work).",
    )
    worker_memory_mb: int = Field(
        1024,
        ge=256,
        le=1_048_576,
        description="An engine process's base resident memory limit in MiB (torch, the zoo, models built on meta); "
        "a real-run process may use the memory budget on top. Past it the work is stopped with a 413.",
    )
    request_timeout_s: float = Field(
        60.0, gt=0, le=3600, description="A request's deadline, from its arrival: its work is stopped there (504)."
    )
    max_response_mb: int = Field(
        32,
        ge=1,
        le=4096,
        description="Largest response body in MiB; feature-map and attention requests that would pass it get a 413 "
        "before any work, saying how many layers or heads fit.",
    )
    max_request_kb: int = Field(256, ge=1, le=65_536, description="Largest JSON request body, in KiB (413 above).")
    max_upload_mb: int = Field(8, ge=1, le=1024, description="Largest uploaded image or weight file, in MiB.")
    max_image_pixels: int = Field(
        40_000_000, ge=1_000, le=500_000_000, description="Images with more pixels are refused (decompression bombs)."
    )
    cache_size: int = Field(256, ge=0, le=100_000, description="Reports kept in the LRU cache (0 disables it).")
    cache_mb: int = Field(
        128, ge=0, le=65_536, description="Most MiB the report cache may hold (reports' JSON), whatever the count."
    )
    meta_models: int = Field(32, ge=0, le=1024, description="Models built on meta kept for reuse (they hold no data).")
    live_models: int = Field(
        2, ge=0, le=64, description="Real models kept loaded for live runs (also bounded by the memory budget)."
    )
    max_modules: int = Field(
        6000, ge=10, le=1_000_000, description="Models with more modules than this are refused on every endpoint."
    )
    access_log: bool = Field(True, description="Write one JSON line per request to stdout.")
    graceful_shutdown_s: float = Field(
        20.0, ge=0, le=600, description="On SIGTERM, how long in-flight requests may finish before workers stop."
    )
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        "info", description="Server log level (access lines are written separately, as JSON)."
    )


SERVER_BASE_MB = 512  # a server process at rest: Python, torch, the zoo and the pages (measured: about 330 MiB)


def memory_ceiling_mb(settings: Settings) -> int:
    """The most resident memory an instance can reach with these settings: per server process, its base and
    the report cache, each engine process at its limit, and the real-run process's budget on top."""
    engine = (settings.engine_workers + 1) * settings.worker_memory_mb + settings.memory_budget_mb
    return settings.workers * (SERVER_BASE_MB + settings.cache_mb + engine)


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()
