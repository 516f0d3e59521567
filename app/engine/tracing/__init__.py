"""Tracing: from what a caller asks for to a model run on fake tensors, and what the run shows.

``selection.py`` turns a zoo name or any ``nn.Module`` into a model and its forward's
arguments; ``tracer.py`` hooks every module (shapes, output bytes, FLOPs) and turns
any failure into one clear error; ``fastpath.py`` and ``geometry.py`` are the shape
rules of common layers; ``cpu_workspace.py`` and ``cpu_rnn.py`` the CPU kernels'
hidden buffers; ``torch_internals.py`` every private PyTorch API the engine uses.
The summary, memory and live rooms all trace through here.
"""
