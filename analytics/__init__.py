"""Tracks in, operator analytics out: counts, sizes, zones, lines, rules, alarms and the store."""

from analytics.export import (
    export_table,
    load_alarms,
    load_counts,
    load_events,
    load_observations,
    load_tracks,
    unique_counts,
)

__all__ = ["export_table", "load_alarms", "load_counts", "load_events", "load_observations", "load_tracks", "unique_counts"]
