"""Live runs: a real model on a photograph (feature maps) or a text (attention maps).

``runs.py`` holds the entry points (``feature_maps``, ``attention``) and the checks
that bound a request's cost before any work; ``activations.py`` and
``attention_maps.py`` capture what layers output; ``images.py`` decodes uploads
safely; ``weights.py`` loads random, bundled or uploaded weights; ``tokenizer.py``
is the course's byte-pair encoder; ``device_lock.py`` is the device gate that lets
one real run at a time use a device (the service's workers take it).
"""

from .activations import LayerMaps
from .attention_maps import AttentionReport
from .runs import FeatureMapsReport, LiveModel, Upload, attention, feature_maps

__all__ = ["AttentionReport", "FeatureMapsReport", "LayerMaps", "LiveModel", "Upload", "attention", "feature_maps"]
