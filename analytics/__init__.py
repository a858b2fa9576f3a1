"""Tracks in, operator analytics out: counts, sizes, zones, lines, rules and alarms (computation only; no I/O beyond snapshots)."""
