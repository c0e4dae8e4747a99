"""The live console at `/` and the `/api/v1/status` and `/api/v1/plan` JSON endpoints."""

from m365_smtp_exporter.console.adapters import ExporterPlanner, exporter_sources
from m365_smtp_exporter.console.routes import PlannerFace, add_console_routes
from m365_smtp_exporter.console.status import StatusSource, build_status

__all__ = [
    "ExporterPlanner",
    "PlannerFace",
    "StatusSource",
    "add_console_routes",
    "build_status",
    "exporter_sources",
]
