"""Layerscope: explore neural-network architectures, layer by layer."""

__version__ = "0.1.0"
