"""Read the track points of a GPX 1.0/1.1 file (latitude, longitude, time).

Extensions (heart rate, cadence) and elevation are ignored; points without a
time are skipped, since a replay needs one.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timezone


@dataclass(frozen=True)
class TrackPoint:
    lat: float
    lng: float
    time: datetime  # aware, UTC

    @property
    def timestamp(self) -> str:
        """RFC 3339, UTC, as the ping API takes it."""
        return self.time.strftime("%Y-%m-%dT%H:%M:%SZ") if not self.time.microsecond else self.time.isoformat().replace("+00:00", "Z")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _parse_time(text: str) -> datetime:
    text = text.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    t = datetime.fromisoformat(text)
    if t.tzinfo is None:  # GPX times are UTC by definition
        t = t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc)


def read_gpx(path: str) -> list[TrackPoint]:
    """Every timed ``trkpt`` of every track and segment, in file order.

    >>> import io, tempfile, os
    >>> doc = ('<gpx xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>'
    ...        '<trkpt lat="38.43" lon="-122.71"><time>2016-08-28T13:03:35Z</time></trkpt>'
    ...        '</trkseg></trk></gpx>')
    >>> with tempfile.NamedTemporaryFile("w", suffix=".gpx", delete=False) as fh:
    ...     _ = fh.write(doc)
    >>> read_gpx(fh.name)[0].timestamp
    '2016-08-28T13:03:35Z'
    >>> os.unlink(fh.name)
    """
    points: list[TrackPoint] = []
    for _, elem in ET.iterparse(path, events=("end",)):
        if _local(elem.tag) != "trkpt":
            continue
        when = next((c.text for c in elem if _local(c.tag) == "time" and c.text), None)
        if when is not None:
            points.append(TrackPoint(float(elem.get("lat")), float(elem.get("lon")), _parse_time(when)))
        elem.clear()
    return points
