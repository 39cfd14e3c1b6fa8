"""Campaigns in memory: the twin of :class:`chalicelib.store.campaigns.DynamoCampaigns`."""

from __future__ import annotations

import copy
import json
import threading

from chalicelib.push.model import CampaignRecord


class MemoryCampaigns:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.campaigns: dict[str, CampaignRecord] = {}

    def put_campaign(self, campaign_id: str, definition: dict, now_iso: str) -> CampaignRecord:
        stored = json.loads(json.dumps(definition, separators=(",", ":")))  # what DynamoDB gives back
        with self._lock:
            old = self.campaigns.get(campaign_id)
            rec = CampaignRecord(
                campaign_id,
                (old.version if old else 0) + 1,
                stored,
                old.created_at if old else now_iso,
                now_iso,
            )
            self.campaigns[campaign_id] = rec
            return copy.deepcopy(rec)

    def get_campaign(self, campaign_id: str) -> CampaignRecord | None:
        rec = self.campaigns.get(campaign_id)
        return copy.deepcopy(rec) if rec else None

    def delete_campaign(self, campaign_id: str) -> bool:
        with self._lock:
            return self.campaigns.pop(campaign_id, None) is not None

    def list_campaigns(self) -> list[CampaignRecord]:
        with self._lock:
            return [copy.deepcopy(r) for r in self.campaigns.values()]
