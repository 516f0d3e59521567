"""JSON or CSV renderings of a cached report."""

from __future__ import annotations

from fastapi.responses import Response

from ..engine.summary.report import SummaryReport
from ..render.csv import compare_csv, memory_csv, summary_csv
from .cache import CachedReport
from .schemas import CompareReport

JSON = "application/json"
CSV = "text/csv; charset=utf-8"


def report_response(item: CachedReport, as_csv: bool, filename: str) -> Response:
    if not as_csv:
        return Response(content=item.json, media_type=JSON)
    text = item.extras.get("csv")
    if text is None:
        report = item.report
        text = summary_csv(report) if isinstance(report, SummaryReport) else memory_csv(report)  # type: ignore[arg-type]
        item.extras["csv"] = text
    return Response(
        content=text, media_type=CSV, headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'}
    )


def compare_response(report: CompareReport, as_csv: bool) -> Response:
    if not as_csv:
        return Response(content=report.model_dump_json(), media_type=JSON)
    return Response(content=compare_csv(report.model_dump()["entries"]), media_type=CSV)
