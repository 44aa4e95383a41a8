"""Pure statistics: rates and intervals, thresholds, strip and run decisions."""
