"""Sending-quota headroom rebuilt from message-trace rows (pure: no I/O, injected clock).

`QuotaEngine` counts rows into minute buckets per sender and for the tenant,
`QuotaEngine.snapshot` turns them into `QuotaFigure`s, and `select_series` bounds the
`sender` label for export (`SeriesSelector` keeps that selection up to date by delta).
The counting rules are documented in engine.py and window.py.
"""

from m365_smtp_exporter.quota.cardinality import (
    OTHER_SENDER,
    SenderSelection,
    SeriesSelector,
    hash_sender,
    select_series,
)
from m365_smtp_exporter.quota.engine import QuotaEngine
from m365_smtp_exporter.quota.limits import LimitName, QuotaLimits, terrl_limit
from m365_smtp_exporter.quota.rows import (
    Direction,
    QuotaRow,
    RowFields,
    direction_of,
    row_from_graph,
)
from m365_smtp_exporter.quota.snapshot import (
    TENANT_SENDER,
    IngestStats,
    QuotaFigure,
    QuotaSnapshot,
)
from m365_smtp_exporter.quota.window import BUCKET_SECONDS

__all__ = [
    "BUCKET_SECONDS",
    "OTHER_SENDER",
    "TENANT_SENDER",
    "Direction",
    "IngestStats",
    "LimitName",
    "QuotaEngine",
    "QuotaFigure",
    "QuotaLimits",
    "QuotaRow",
    "QuotaSnapshot",
    "RowFields",
    "SenderSelection",
    "SeriesSelector",
    "direction_of",
    "hash_sender",
    "row_from_graph",
    "select_series",
    "terrl_limit",
]
