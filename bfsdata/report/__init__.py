"""`bfsdata report`: score, calibrate thresholds, judge strips and runs, write the report."""

from bfsdata.report.stage import report
from bfsdata.report.write import ReportSummary

__all__ = ["ReportSummary", "report"]
