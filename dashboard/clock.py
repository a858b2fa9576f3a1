"""Site time: every time the dashboard shows is in one zone (``dashboard.timezone``), named beside it, on a 24-hour clock.

The store keeps UTC epoch seconds; only the dashboard turns them into the
site's wall clock. Charts get that wall clock encoded as if it were UTC and a
UTC time scale, so the browser's own zone never shifts an axis.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import altair as alt
import pandas as pd

DATE_TIME = "%Y-%m-%d %H:%M:%S"
TIME_TEXT = "time_text"  # chart_frame's column of site times as text, for tooltips


def server_zone() -> dt.tzinfo:
    """The zone of the machine the dashboard runs on, used when the site names none."""
    return dt.datetime.now().astimezone().tzinfo


def zone(name: str | None) -> dt.tzinfo:
    """The IANA zone ``name`` (e.g. ``Europe/Berlin``), or the server's; ValueError for an unknown name."""
    if not name:
        return server_zone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as Europe/Berlin or UTC)") from None


@dataclass(frozen=True)
class Clock:
    """Formats and converts times for one site zone."""

    tz: dt.tzinfo

    @property
    def label(self) -> str:
        """The zone's name as shown to operators: its IANA key, else its abbreviation."""
        return getattr(self.tz, "key", None) or dt.datetime.now(self.tz).tzname() or "local"

    def fmt(self, ts: float | None, pattern: str = DATE_TIME) -> str:
        """Epoch seconds as site wall-clock text; "—" for no time."""
        return "—" if ts is None or pd.isna(ts) else dt.datetime.fromtimestamp(ts, self.tz).strftime(pattern)

    def local(self, times: pd.Series) -> pd.Series:
        """UTC datetimes as site wall clock, labelled UTC, for a chart's UTC scale (see the module docstring)."""
        return times.dt.tz_convert(self.tz).dt.tz_localize(None).dt.tz_localize("UTC")

    def chart_frame(self, frame: pd.DataFrame, column: str = "time") -> pd.DataFrame:
        """``frame`` ready for :meth:`x` and :meth:`tooltip`: ``column`` (UTC datetimes) as site wall clock on a
        UTC scale, and :data:`TIME_TEXT` the same times as text."""
        if column not in frame:
            return frame
        text = [self.fmt(t.timestamp()) if pd.notna(t) else "—" for t in frame[column]]
        return frame.assign(**{column: self.local(frame[column]), TIME_TEXT: text})

    def time_format(self, span_s: float) -> str:
        """Axis label format for a window of ``span_s`` seconds: seconds when short, the date when long."""
        return "%H:%M:%S" if span_s <= 600 else "%H:%M" if span_s <= 86400 else "%d %b %H:%M"

    def x(self, span_s: float, field: str = "time", title: str = "time") -> alt.X:
        """A time axis in site time, titled with the zone, on a 24-hour clock.

        Labels come from a ``utcFormat`` expression: the chart frontend ignores an
        axis ``format`` given with ``formatType: "utc"`` and falls back to 12-hour
        labels without AM/PM. Ticks are at least a second apart, so a short window
        never gets ticks that all read the same second.
        """
        label = f"utcFormat(datum.value, '{self.time_format(span_s)}')"
        return alt.X(
            f"{field}:T",
            title=f"{title} ({self.label})",
            scale=alt.Scale(type="utc"),
            axis=alt.Axis(labelExpr=label, tickMinStep=1000, labelOverlap=True),
        )

    def tooltip(self, title: str = "time") -> alt.Tooltip:
        """The site time of a point (from :meth:`chart_frame`'s text: a formatted time would be the browser's)."""
        return alt.Tooltip(f"{TIME_TEXT}:N", title=f"{title} ({self.label})")
