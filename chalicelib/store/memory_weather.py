"""Weather storage in memory (alert records, lineages, the feed poller's
state, conditions per H3 cell): the twin of
:class:`chalicelib.store.weather.DynamoWeather` (the same contract tests
run against both). Values go in and out as copies, through JSON for alert
records as DynamoDB would.
"""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass, field

from chalicelib.store.memory_base import Tally
from chalicelib.store.weather import (
    FEED_STATE_KINDS,
    OBS_OPTIONAL,
    check_feed_state,
    feed_key,
    newest_per_cell,
    ttl_seconds,
)


@dataclass
class _WeatherTables:
    lock: threading.RLock = field(default_factory=threading.RLock)
    alerts: dict[str, tuple[str, int]] = field(default_factory=dict)  # id → (record JSON, expires_at)
    lineages: dict[str, dict] = field(default_factory=dict)
    members: dict[str, str] = field(default_factory=dict)  # alert id → lineage
    feeds: dict[str, dict] = field(default_factory=dict)  # feed key → state
    conditions: dict[int, tuple[dict, int]] = field(default_factory=dict)  # cell → (observation, expires_at)


class MemoryWeather:
    """Weather storage in dictionaries (see the module docs)."""

    def __init__(self, tally: Tally | None = None) -> None:
        self.tally = tally or Tally()
        self._tables = _WeatherTables()

    def _wx(self) -> _WeatherTables:
        return self._tables

    def _count(self, kind: str) -> None:
        (self.tally.read if kind == "reads" else self.tally.write)()

    # ------------------------------------------------------------ alert records
    def get_alert_records(self, alert_ids: list[str]) -> dict[str, dict]:
        wx = self._wx()
        with wx.lock:
            self._count("reads")
            return {i: json.loads(wx.alerts[i][0]) for i in set(alert_ids) if i in wx.alerts}

    def put_alert_record(self, alert_id: str, record: dict, expires_at: float) -> bool:
        text = json.dumps(record, separators=(",", ":"), sort_keys=True)
        wx = self._wx()
        with wx.lock:
            if alert_id in wx.alerts:
                return False
            wx.alerts[alert_id] = (text, ttl_seconds(expires_at))
            self._count("writes")
            return True

    def put_alert_records(self, records: list[tuple[str, dict, float]]) -> set[str]:
        return {alert_id for alert_id, record, expires_at in records if self.put_alert_record(alert_id, record, expires_at)}

    def advance_alert(self, alert_id: str, record: dict, expires_at: float, *, from_status: tuple[str, ...]) -> bool:
        text = json.dumps(record, separators=(",", ":"), sort_keys=True)
        wx = self._wx()
        with wx.lock:
            cur = wx.alerts.get(alert_id)
            if cur is None or json.loads(cur[0]).get("status") not in from_status:
                return False
            wx.alerts[alert_id] = (text, ttl_seconds(expires_at))
            self._count("writes")
            return True

    def forget_alert(self, alert_id: str) -> None:
        wx = self._wx()
        with wx.lock:
            cur = wx.alerts.get(alert_id)
            if cur is not None and json.loads(cur[0]).get("status") == "queued":
                del wx.alerts[alert_id]
                self._count("writes")

    # ------------------------------------------------------------ membership
    def get_members(self, alert_ids: list[str]) -> dict[str, str]:
        wx = self._wx()
        with wx.lock:
            self._count("reads")
            return {i: wx.members[i] for i in set(alert_ids) if i in wx.members}

    def add_members(self, alert_ids: list[str], lineage_id: str, expires_at: float) -> dict[str, str]:
        wx = self._wx()
        with wx.lock:
            out = {}
            for alert_id in dict.fromkeys(alert_ids):
                out[alert_id] = wx.members.setdefault(alert_id, lineage_id)
                self._count("writes")
            return out

    def file_members(self, members: list[tuple[str, str, float]]) -> set[str]:
        wx = self._wx()
        with wx.lock:
            filed = set()
            for alert_id, lineage_id, _expires_at in members:
                if alert_id not in wx.members:
                    wx.members[alert_id] = lineage_id
                    filed.add(alert_id)
                    self._count("writes")
            return filed

    # ------------------------------------------------------------ lineages
    @staticmethod
    def _lineage_out(rec: dict) -> dict:
        return {
            "ended": rec["ended"],
            "ended_reason": rec["ended_reason"],
            "alert_ids": sorted(rec["alert_ids"]),
            "updated_at": rec["updated_at"],
        }

    def get_lineages(self, lineage_ids: list[str]) -> dict[str, dict]:
        wx = self._wx()
        with wx.lock:
            self._count("reads")
            return {i: self._lineage_out(wx.lineages[i]) for i in set(lineage_ids) if i in wx.lineages}

    def _lineage_rec(self, wx: _WeatherTables, lineage_id: str) -> dict:
        return wx.lineages.setdefault(
            lineage_id, {"ended": False, "ended_reason": None, "alert_ids": set(), "updated_at": None, "expires_at": 0}
        )

    def touch_lineage(self, lineage_id: str, alert_id: str, now: float, expires_at: float) -> dict:
        if not alert_id:
            raise ValueError("alert_id must not be empty")
        wx = self._wx()
        with wx.lock:
            rec = self._lineage_rec(wx, lineage_id)
            rec["alert_ids"].add(alert_id)
            rec["updated_at"] = float(now)
            rec["expires_at"] = ttl_seconds(expires_at)
            self._count("writes")
            return self._lineage_out(rec)

    def end_lineage(self, lineage_id: str, reason: str, now: float, expires_at: float) -> None:
        wx = self._wx()
        with wx.lock:
            rec = self._lineage_rec(wx, lineage_id)
            rec["ended"] = True
            if rec["ended_reason"] is None:
                rec["ended_reason"] = reason
            rec["updated_at"] = float(now)
            rec["expires_at"] = ttl_seconds(expires_at)
            self._count("writes")

    # ------------------------------------------------------------ feed state
    def get_feed_state(self, url: str) -> dict | None:
        wx = self._wx()
        with wx.lock:
            state = wx.feeds.get(feed_key(url))
            return copy.deepcopy(state) if state is not None else None

    def put_feed_state(self, url: str, state: dict) -> None:
        check_feed_state(state)
        stored = {}
        for name, kind in FEED_STATE_KINDS.items():
            value = state.get(name)
            stored[name] = None if value is None else str(value) if kind == "str" else float(value)
        wx = self._wx()
        with wx.lock:
            wx.feeds[feed_key(url)] = stored

    # ------------------------------------------------------------ conditions
    def put_conditions(self, items: list[tuple[int, dict, float]]) -> None:
        """Atomic here (one lock): a stored newer observation is kept."""
        batch = newest_per_cell(items)
        wx = self._wx()
        with wx.lock:
            for cell, (obs, expires_at) in batch.items():
                cur = wx.conditions.get(cell)
                if cur is not None and cur[0]["observed_at"] > float(obs["observed_at"]):
                    continue
                stored = {
                    "condition": str(obs["condition"]),
                    "temperature_c": float(obs["temperature_c"]),
                    "observed_at": float(obs["observed_at"]),
                }
                for name in OBS_OPTIONAL:
                    stored[name] = float(obs[name]) if obs.get(name) is not None else None
                wx.conditions[cell] = (stored, ttl_seconds(expires_at))
            if batch:
                self._count("writes")

    def get_conditions(self, cells: list[int], now: float) -> dict[int, dict]:
        wx = self._wx()
        with wx.lock:
            self._count("reads")
            out = {}
            for c in {int(c) for c in cells}:
                cur = wx.conditions.get(c)
                if cur is not None and cur[1] > now:
                    out[c] = dict(cur[0])
            return out
