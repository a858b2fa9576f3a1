"""Tracks in, operator analytics out: zones, counts and events."""
