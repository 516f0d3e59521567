"""bitsandbytes' 8-bit AdamW as it lays out its state, for estimates (its own step needs its CUDA kernels).

The layout is bitsandbytes' ``Optimizer2State.init_state``: a parameter of 4,096 elements
or more keeps both moments as one byte per element (``state1``, ``state2``, uint8) with a
float32 absmax per block of 256 (``absmax1``, ``absmax2``); a smaller one keeps them in
float32; one signed and one unsigned 256-value quantization map are shared by every
parameter. The step is one fused kernel that updates the moments and the weights in
place, so it allocates nothing. The paged variant keeps the same bytes in CUDA unified
memory, which the driver may move to the host under pressure. tests/app/engine
compares the layout with bitsandbytes' own optimizer run on the CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

MIN_8BIT_SIZE = 4096  # bitsandbytes' min_8bit_size: smaller parameters keep float32 moments
BLOCK = 256  # elements per absmax


class AdamW8bitLayout(torch.optim.Optimizer):
    """AdamW with bitsandbytes' 8-bit blockwise state, allocated as it allocates it; the step allocates nothing."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-3, paged: bool = False) -> None:
        super().__init__(params, {"lr": lr})
        self.paged = paged
        self._maps: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None and not self.state[param]:
                    self._init_state(param)
        return None

    def _init_state(self, param: torch.Tensor) -> None:
        state = self.state[param]
        state["step"] = 0
        if param.numel() < MIN_8BIT_SIZE:
            state["state1"] = torch.zeros_like(param, dtype=torch.float32)
            state["state2"] = torch.zeros_like(param, dtype=torch.float32)
            return
        signed, unsigned = self._maps.get(param.device) or self._new_maps(param.device)
        blocks = math.ceil(param.numel() / BLOCK)
        state["state1"] = torch.zeros_like(param, dtype=torch.uint8)
        state["qmap1"] = signed
        state["state2"] = torch.zeros_like(param, dtype=torch.uint8)
        state["qmap2"] = unsigned
        state["absmax1"] = torch.zeros((blocks,), dtype=torch.float32, device=param.device)
        state["absmax2"] = torch.zeros((blocks,), dtype=torch.float32, device=param.device)

    def _new_maps(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        maps = (torch.zeros(256, device=device), torch.zeros(256, device=device))
        self._maps[device] = maps
        return maps


class PagedAdamW8bitLayout(AdamW8bitLayout):
    """The paged variant: the same bytes, in memory the driver can page to the host."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-3) -> None:
        super().__init__(params, lr=lr, paged=True)
