"""Reports over what the processes did: SLA, onboarding, renewals, leads, automations.

Facts are written as the processes emit their events (``facts``) and summed
per day into roll-ups (``rollups``); a report (``catalogue``) reads the
roll-ups of its range, so its cost follows the days asked, not the outcomes
stored. ``shape`` is what every report is asked and answers.
"""

from crm.reports.catalogue import REPORTS
from crm.reports.shape import (
    DEFAULT_RANGE,
    LAST_END,
    MAX_RANGE,
    ReportColumn,
    ReportFigure,
    ReportQuery,
    ReportSpec,
    ReportTable,
    report_csv,
)

__all__ = [
    "DEFAULT_RANGE",
    "LAST_END",
    "MAX_RANGE",
    "REPORTS",
    "ReportColumn",
    "ReportFigure",
    "ReportQuery",
    "ReportSpec",
    "ReportTable",
    "report_csv",
]
