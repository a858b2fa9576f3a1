"""Tracks in, operator analytics out: zones, counts and events."""

from analytics.export import export_table, load_alarms, load_counts, load_events, load_observations, load_tracks

__all__ = ["export_table", "load_alarms", "load_counts", "load_events", "load_observations", "load_tracks"]
