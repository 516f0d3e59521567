"""POST /api/feature-maps: what each layer of an image model outputs, from a real forward pass."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from ...engine.errors import InputError
from ..deps import ServiceDep
from ..errors import PayloadTooLargeError, UnsupportedMediaError
from ..realruns import FeatureMapsReport, Upload
from ..schemas import ERROR_RESPONSES, FeatureMapsForm, FeatureMapsRequest

router = APIRouter(tags=["live"])

REQUEST_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": FeatureMapsRequest.model_json_schema(ref_template="#/components/schemas/{model}")
        },
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["architecture"],
                "properties": {
                    name: {"type": "string", "format": "binary"}
                    if name in ("image", "weights_file")
                    else {"type": "integer", "minimum": 0}
                    if name == "channel_index"
                    else {"type": "string"}
                    for name in FeatureMapsForm.model_fields
                },
            }
        },
    },
}


def _json_field(value: Any, name: str) -> Any:
    try:
        return json.loads(value)
    except (TypeError, json.JSONDecodeError):
        raise InputError(f"{name} must be JSON text", name) from None


async def _read(upload: UploadFile, limit: int, what: str) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLargeError(what, limit)
    return data


@router.post(
    "/api/feature-maps",
    response_model=FeatureMapsReport,
    summary="Feature maps of an image",
    openapi_extra={"requestBody": REQUEST_BODY},
    responses={k: ERROR_RESPONSES[k] for k in (404, 413, 415, 422, 503, 504)},
)
async def feature_maps(request: Request, service: ServiceDep) -> FeatureMapsReport:
    """Send an image (multipart) or pick a bundled sample (JSON); get each layer's channels as a PNG grid,
    per-channel statistics, one channel's values on demand, and the class probabilities."""
    content_type = request.headers.get("content-type", "")
    limit = service.settings.max_upload_mb * 2**20
    upload = None
    if content_type.startswith("multipart/form-data"):
        async with request.form(max_files=2, max_fields=20) as form:
            architecture = form.get("architecture")
            if not isinstance(architecture, str) or not architecture:
                raise InputError("architecture is required", "architecture")
            config = _json_field(form.get("config"), "config") if form.get("config") else None
            if config is not None and not isinstance(config, dict):
                raise InputError("config must be a JSON object", "config")
            raw_layers = form.get("layers")
            layers = None
            if isinstance(raw_layers, str) and raw_layers.strip():
                text = raw_layers.strip()
                layers = _json_field(text, "layers") if text.startswith("[") else [p.strip() for p in text.split(",")]
                if not isinstance(layers, list) or not all(isinstance(p, str) for p in layers):
                    raise InputError("layers must be a list of module paths", "layers")
            image = form.get("image")
            sample = form.get("sample")
            if isinstance(image, UploadFile):
                image_bytes = await _read(image, limit, "the image")
            elif isinstance(sample, str) and sample:
                image_bytes = service.real.sample_bytes(sample)
            else:
                raise InputError("send an image file or name a sample", "image")
            weights = form.get("weights") if isinstance(form.get("weights"), str) else "random"
            weights_file = form.get("weights_file")
            if isinstance(weights_file, UploadFile):
                upload = Upload(
                    await _read(weights_file, limit, "the weights file"), weights_file.filename or "weights"
                )
                weights = "upload"
            channel = None
            if form.get("channel_layer"):
                try:
                    channel = (str(form.get("channel_layer")), int(str(form.get("channel_index") or 0)))
                except ValueError:
                    raise InputError("channel_index must be an integer", "channel_index") from None
                if channel[1] < 0:
                    raise InputError("channel_index must be >= 0", "channel_index")
    elif content_type.startswith("application/json"):
        try:
            body = FeatureMapsRequest.model_validate(await request.json())
        except (ValidationError, ValueError) as exc:
            raise _invalid(exc) from None
        architecture, config, layers, weights = body.architecture, body.config, body.layers, body.weights
        image_bytes = service.real.sample_bytes(body.sample)
        channel = (body.channel.layer, body.channel.index) if body.channel else None
    else:
        raise UnsupportedMediaError("send multipart/form-data (with an image) or application/json (with a sample)")
    return await service.run(
        lambda: service.real.feature_maps(architecture, config, image_bytes, layers, weights, upload, channel)
    )


def _invalid(exc: Exception) -> InputError:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "body"
        return InputError(f"{field}: {first['msg']}", field)
    return InputError("the body is not valid JSON", "body")
