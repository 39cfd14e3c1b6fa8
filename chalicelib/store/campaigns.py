"""Campaigns on DynamoDB: the ``campaigns`` table, one item per campaign
(``version`` +1 per put, ``definition`` as compact JSON)."""

from __future__ import annotations

import json

from chalicelib.push.model import CampaignRecord
from chalicelib.store.ddb import n as _n
from chalicelib.store.ddb import s as _s
from chalicelib.store.table import Item, Table


def _campaign(item: Item) -> CampaignRecord:
    return CampaignRecord(
        campaign_id=item["campaign_id"]["S"],
        version=int(item["version"]["N"]),
        definition=json.loads(item["definition"]["S"]),
        created_at=item["created_at"]["S"],
        updated_at=item["updated_at"]["S"],
    )


class DynamoCampaigns:
    def __init__(self, table: Table) -> None:
        self.table = table

    def put_campaign(self, campaign_id: str, definition: dict, now_iso: str) -> CampaignRecord:
        resp = self.table.update(
            {"campaign_id": _s(campaign_id)},
            UpdateExpression="SET #v = if_not_exists(#v, :z) + :one, #d = :d, #c = if_not_exists(#c, :now), #u = :now",
            ExpressionAttributeNames={"#v": "version", "#d": "definition", "#c": "created_at", "#u": "updated_at"},
            ExpressionAttributeValues={
                ":z": _n(0),
                ":one": _n(1),
                ":d": _s(json.dumps(definition, separators=(",", ":"))),
                ":now": _s(now_iso),
            },
            ReturnValues="ALL_NEW",
        )
        return _campaign(resp["Attributes"])

    def get_campaign(self, campaign_id: str) -> CampaignRecord | None:
        item = self.table.get({"campaign_id": _s(campaign_id)}, consistent=True)
        return _campaign(item) if item else None

    def delete_campaign(self, campaign_id: str) -> bool:
        resp = self.table.delete({"campaign_id": _s(campaign_id)}, ReturnValues="ALL_OLD")
        return bool(resp.get("Attributes"))

    def list_campaigns(self) -> list[CampaignRecord]:
        return [_campaign(i) for i in self.table.items("scan", ConsistentRead=True)]
