"""POST /api/feature-maps: what each layer of an image model outputs, from a real forward pass.

One route, two bodies, each validated by one pydantic class whose schema is the
OpenAPI document's: JSON (``FeatureMapsRequest``: a bundled sample) or
multipart/form-data (``FeatureMapsForm``: an uploaded image, and your weights).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from ...engine.errors import InputError
from ...engine.live.runs import FeatureMapsReport, sample_bytes
from ..deps import ServiceDep, WorkDep
from ..errors import BadRequestError, PayloadTooLargeError, UnsupportedMediaError, validation_error
from ..openapi import schema_ref
from ..responses import JSON
from ..schemas import FeatureMapsForm, FeatureMapsRequest, error_responses

router = APIRouter(tags=["live"])

REQUEST_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": schema_ref(FeatureMapsRequest)},
        "multipart/form-data": {"schema": schema_ref(FeatureMapsForm)},
    },
}
FILE_FIELDS = ("image", "weights_file")


async def _read(upload: UploadFile, limit: int, what: str) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLargeError(what, limit)
    return data


async def _form_body(request: Request, limit: int) -> FeatureMapsForm:
    values: dict[str, Any] = {}
    try:
        async with request.form(max_files=2, max_fields=20) as form:
            for name, value in form.multi_items():
                if name in FILE_FIELDS and isinstance(value, UploadFile):
                    values[name] = await _read(value, limit, "the image" if name == "image" else "the weights file")
                    if name == "weights_file":
                        values["weights_filename"] = value.filename or "weights"
                elif isinstance(value, str):
                    values[name] = value
                # any other file part is not read: only image and weights_file are files here
    except (AssertionError, ValueError, KeyError) as exc:  # multipart the parser cannot read
        if isinstance(exc, InputError):
            raise
        raise BadRequestError(f"the multipart body cannot be read: {exc}") from None
    try:
        return FeatureMapsForm.model_validate(values)
    except ValidationError as exc:
        raise validation_error(exc) from None
    except RecursionError:
        raise InputError("config or layers nest too deeply to read", "config") from None


async def feature_maps_body(request: Request, service: ServiceDep) -> FeatureMapsRequest | FeatureMapsForm:
    """The request body, JSON or multipart, validated by its pydantic class."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        return await _form_body(request, service.settings.max_upload_mb * 2**20)
    if content_type.startswith("application/json"):
        try:
            return FeatureMapsRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            raise validation_error(exc) from None
        except (RecursionError, json.JSONDecodeError, UnicodeDecodeError):
            raise InputError("the body is not valid JSON (or nests too deeply to read)", "body") from None
    raise UnsupportedMediaError("send multipart/form-data (with an image) or application/json (with a sample)")


@router.post(
    "/api/feature-maps",
    response_model=FeatureMapsReport,
    summary="Feature maps of an image",
    openapi_extra={"requestBody": REQUEST_BODY},
    responses=error_responses(400, 404, 413, 415, 422, 503, 504),
)
async def feature_maps(
    body: Annotated[FeatureMapsRequest | FeatureMapsForm, Depends(feature_maps_body)],
    service: ServiceDep,
    work: WorkDep,
) -> Response:
    """Send an image (multipart) or pick a bundled sample (JSON); get each layer's channels as a PNG grid,
    per-channel statistics, one channel's values on demand, and the class probabilities. Each layer draws 64
    channels from channel_offset; a response that would pass the size limit is refused (413) before the model
    runs, saying how many layers fit."""
    upload = None
    if isinstance(body, FeatureMapsForm):
        if body.image is not None:
            image = body.image
        elif body.sample:
            image = sample_bytes(body.sample)
        else:
            raise InputError("send an image file or name a sample", "image")
        if body.weights_file is not None:
            upload = (body.weights_file, body.weights_filename)
        channel = (body.channel_layer, body.channel_index) if body.channel_layer else None
    else:
        image = sample_bytes(body.sample)
        channel = (body.channel.layer, body.channel.index) if body.channel else None
    weights = "upload" if upload else body.weights
    data = await service.feature_maps(
        work,
        name=body.architecture,
        config=body.config,
        image=image,
        layers=body.layers,
        weights=weights,
        upload=upload,
        channel=channel,
        channel_offset=body.channel_offset,
    )
    return Response(content=data, media_type=JSON)
