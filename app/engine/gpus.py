"""The GPUs engineers size for: memory, peak dense throughput and bandwidth, from the vendors' datasheets.

Throughputs are dense (without 2:4 sparsity), for the tensor cores at bf16/fp16 with
fp32 accumulation, and for the vector units at fp32. Capacities are what the driver
reports as the card's total (``nvidia-smi``'s memory.total in MiB, ``rocm-smi``'s VRAM
total for the MI300X), not the datasheet's marketing "GB": an H100 80GB reports
81,559 MiB (79.6 GiB), an A100 80GB 81,920 MiB. The datasheet figure is kept as the
label. What a model may use is less: ``usable_bytes`` takes off a CUDA context and
library workspaces (``CONTEXT_RESERVE_BYTES``) and a share for the caching allocator's
fragmentation (``ALLOCATOR_SHARE``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pydantic import BaseModel, Field

GiB = 2**30
CONTEXT_RESERVE_BYTES = 1 * GiB  # CUDA context, cuBLAS/cuDNN workspaces, NCCL buffers
CAPACITY_SOURCE = "the total the driver reports: nvidia-smi's memory.total (rocm-smi's VRAM total for AMD)"
ALLOCATOR_SHARE = 0.95  # of what remains: the caching allocator cannot use every byte (block rounding, splits)


@dataclass(frozen=True)
class GPU:
    id: str
    name: str
    vendor: str
    memory_mib: int  # the total the driver reports (nvidia-smi memory.total, rocm-smi VRAM total), in MiB
    bandwidth_gb_s: float  # GB/s (10^9 bytes per second)
    tflops_bf16: float | None  # dense tensor-core TFLOP/s; None: no bf16 tensor cores
    tflops_fp16: float
    tflops_fp32: float
    source: str  # the datasheet the figures come from

    datasheet_gb: int = 0  # the datasheet's capacity, in GB as vendors print it (the label, not the figure used)

    @property
    def memory_bytes(self) -> int:
        return self.memory_mib * 2**20

    def usable_bytes(self, reserve_bytes: int = CONTEXT_RESERVE_BYTES, share: float = ALLOCATOR_SHARE) -> int:
        return int((self.memory_bytes - reserve_bytes) * share)

    def peak_tflops(self, dtype: torch.dtype) -> float:
        """Peak dense TFLOP/s for computing in ``dtype`` (bf16 on a GPU without it runs at fp32)."""
        if dtype == torch.bfloat16:
            return self.tflops_bf16 or self.tflops_fp32
        if dtype == torch.float16:
            return self.tflops_fp16
        return self.tflops_fp32

    def describe(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "vendor": self.vendor,
            "memory_bytes": self.memory_bytes,
            "datasheet_gb": self.datasheet_gb,
            "memory_source": CAPACITY_SOURCE,
            "usable_bytes": self.usable_bytes(),
            "bandwidth_gb_s": self.bandwidth_gb_s,
            "tflops_bf16": self.tflops_bf16,
            "tflops_fp16": self.tflops_fp16,
            "tflops_fp32": self.tflops_fp32,
            "source": self.source,
        }


GPUS: dict[str, GPU] = {
    g.id: g
    for g in (
        GPU(
            "t4-16gb",
            "NVIDIA T4",
            "NVIDIA",
            15360,
            320,
            None,
            65,
            8.1,
            "NVIDIA T4 Tensor Core GPU datasheet",
            datasheet_gb=16,
        ),
        GPU(
            "l4-24gb",
            "NVIDIA L4",
            "NVIDIA",
            23034,
            300,
            121,
            121,
            30.3,
            "NVIDIA L4 Tensor Core GPU datasheet",
            datasheet_gb=24,
        ),
        GPU(
            "a10g-24gb",
            "NVIDIA A10G (AWS G5)",
            "NVIDIA",
            23028,
            600,
            70,
            70,
            35,
            "AWS EC2 G5 instance specifications (A10G), beside the NVIDIA A10 datasheet",
            datasheet_gb=24,
        ),
        GPU(
            "rtx4090-24gb",
            "NVIDIA GeForce RTX 4090",
            "NVIDIA",
            24564,
            1008,
            165.2,
            165.2,
            82.6,
            "NVIDIA Ada Lovelace GPU architecture whitepaper (RTX 4090; fp32 accumulation)",
            datasheet_gb=24,
        ),
        GPU(
            "a100-40gb",
            "NVIDIA A100 40GB (SXM)",
            "NVIDIA",
            40960,
            1555,
            312,
            312,
            19.5,
            "NVIDIA A100 Tensor Core GPU datasheet",
            datasheet_gb=40,
        ),
        GPU(
            "a100-80gb",
            "NVIDIA A100 80GB (SXM)",
            "NVIDIA",
            81920,
            2039,
            312,
            312,
            19.5,
            "NVIDIA A100 Tensor Core GPU datasheet",
            datasheet_gb=80,
        ),
        GPU(
            "h100-80gb",
            "NVIDIA H100 (SXM)",
            "NVIDIA",
            81559,
            3350,
            989.5,
            989.5,
            67,
            "NVIDIA H100 Tensor Core GPU datasheet",
            datasheet_gb=80,
        ),
        GPU(
            "h200-141gb",
            "NVIDIA H200 (SXM)",
            "NVIDIA",
            143771,
            4800,
            989.5,
            989.5,
            67,
            "NVIDIA H200 Tensor Core GPU datasheet",
            datasheet_gb=141,
        ),
        GPU(
            "b200-192gb",
            "NVIDIA B200",
            "NVIDIA",
            183359,
            8000,
            2250,
            2250,
            80,
            "NVIDIA Blackwell B200 datasheet",
            datasheet_gb=192,
        ),
        GPU(
            "mi300x-192gb",
            "AMD Instinct MI300X",
            "AMD",
            196608,
            5300,
            1307.4,
            1307.4,
            163.4,
            "AMD Instinct MI300X accelerator datasheet",
            datasheet_gb=192,
        ),
    )
}
DEFAULT_GPU = "h100-80gb"


class GpuFit(BaseModel):
    """Whether a per-device peak fits one GPU."""

    gpu: str = Field(description="Catalog id (GET /api/gpus).")
    name: str
    memory_bytes: int = Field(description="The datasheet's capacity.")
    usable_bytes: int = Field(description="Capacity less the CUDA context reserve and the allocator's share.")
    headroom_bytes: int = Field(description="usable_bytes - peak_bytes (negative: it does not fit).")
    fits: bool


def fits(peak_bytes: int) -> list[GpuFit]:
    """The peak against every GPU of the catalog."""
    return [
        GpuFit(
            gpu=g.id,
            name=g.name,
            memory_bytes=g.memory_bytes,
            usable_bytes=g.usable_bytes(),
            headroom_bytes=g.usable_bytes() - peak_bytes,
            fits=peak_bytes <= g.usable_bytes(),
        )
        for g in GPUS.values()
    ]


def get_gpu(gpu: str) -> GPU:
    from .errors import InputError

    if gpu not in GPUS:
        raise InputError(f"gpu must be one of {', '.join(GPUS)}, got {gpu!r}", "gpu")
    return GPUS[gpu]
