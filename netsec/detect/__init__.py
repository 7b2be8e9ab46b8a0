"""Detection: the prefilter, the detector (grouping, header match, rules) and thresholds."""
