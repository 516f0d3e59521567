"""GET /api/labs and POST /api/labs/{name}: the course's worked examples, computed on the student's numbers."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from ...engine.labs import LABS, describe_labs
from ..deps import ServiceDep, WorkDep
from ..responses import JSON
from ..schemas import error_responses

router = APIRouter(tags=["labs"])
LabName = Annotated[str, Path(pattern=r"^[a-z-]{1,32}$", description="A lab's name, from GET /api/labs.")]


class LabResult(BaseModel):
    """Every intermediate value, with the formula it came from; the lab's own outputs sit beside these fields."""

    model_config = ConfigDict(extra="allow")

    lab: str
    title: str
    section: str = Field(description="Where the course notes teach it.")
    inputs: dict[str, Any] = Field(description="The values used: the student's, defaults filled in.")
    steps: list[dict[str, Any]] = Field(description="label, formula and value of each step.")
    errata: list[dict[str, Any]] = Field(description="Where the notes' figure differs, and whether only by convention.")
    checks: list[str] = Field(description="What was checked against PyTorch's own modules.")
    notes: list[str]


@router.get("/api/labs", summary="The labs")
def labs() -> list[dict[str, Any]]:
    """Each lab: its name, title, the notes' section, the layer types it explains, its input schema and the notes'
    example as defaults."""
    return describe_labs()


@router.post(
    "/api/labs/{name}",
    response_model=LabResult,
    summary="Compute a lab",
    responses=error_responses(404, 413, 422, 504),
)
async def run_lab(
    name: LabName,
    service: ServiceDep,
    work: WorkDep,
    values: Annotated[
        dict[str, Any] | None,
        Body(description="The lab's inputs (see its input_schema in GET /api/labs); empty: the notes' example."),
    ] = None,
) -> Response:
    """An empty body computes the notes' own example; every number can be changed."""
    if name not in LABS:
        from ...engine.errors import InputError

        error = InputError(f"no lab {name!r}; the labs are {', '.join(LABS)}", "name")
        error.status = 404  # type: ignore[attr-defined]
        raise error
    data = await service.lab(name, values, work)
    return Response(content=data, media_type=JSON)
