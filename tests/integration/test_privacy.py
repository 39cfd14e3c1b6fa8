"""Privacy against moto, end to end through the HTTP API (chalice.test.Client):
``DELETE /v1/devices/{id}`` erases the profile, the location state, the
region-index entry and the SNS endpoint; only the last accepted location is
ever stored; delivery records carry no coordinates; the location sweep
erases expired locations; the app's log lines are JSON with a request id
and carry no location, token or key; metrics come out as EMF."""

from __future__ import annotations

import dataclasses
import json
import time
from decimal import Decimal

import boto3
from boto3.dynamodb.types import TypeDeserializer

from chalicelib import container
from chalicelib.settings import get_settings
from chalicelib.ports import Device
from chalicelib.presence import LocationState
from chalicelib.weather.region import location_cell
from tests.conftest import ADMIN_KEY, APP_KEY, run_queues
from tools.demo_storm import CAMPAIGN as STORM_CAMPAIGN
from tools.demo_storm import DEVICES as STORM_DEVICES
from tools.demo_storm import rebased_alert

MOTO_ACCOUNT = "123456789012"
MOTO_REGION = "us-east-1"
DAY = 86400.0

SHOP = (38.4401, -122.7003)
CIRCLE = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [SHOP[1], SHOP[0]]},
          "properties": {"radius_m": 150, "name": "Shop", "tags": ["shop"]}}
WELCOME = {"name": "Welcome", "trigger": {"type": "geofence_enter", "fence_ids": ["shop"]},
           "message": {"title": "Hi", "body": "Welcome to {{ fence.name }}: {{ coupon.code }}"},
           "coupon": {"percent_off": 10, "prefix": "SHOP", "valid_hours": 72}}


def call(api, method, path, payload=None, *, key=ADMIN_KEY, secret=None):
    headers = {"Content-Type": "application/json", "X-Api-Key": key}
    if secret:
        headers["X-Device-Secret"] = secret
    resp = getattr(api.http, method)(path, headers=headers, body=json.dumps(payload) if payload is not None else None)
    return resp.status_code, (json.loads(resp.body) if resp.body else None)


def register(api, device_id, token, consent=None) -> str | None:
    body = {"platform": "android", "push_token": token, "attributes": {"first_name": device_id},
            "consent": consent or {"push": True, "location": True}}
    status, out = call(api, "put", f"/v1/devices/{device_id}", body, key=APP_KEY)
    assert status == 200, out
    return out.get("device_secret")


def ping(api, device_id, where, secret, ts=None):
    body = {"device_id": device_id, "lat": where[0], "lng": where[1], "timestamp": ts or time.time() - 5}
    status, out = call(api, "post", "/v1/pings", body, key=APP_KEY, secret=secret)
    assert status == 200, out
    return out["results"][0]


def items(table: str) -> list[dict]:
    """Every item of a table, as Python values (a Scan, every page)."""
    client = boto3.client("dynamodb")
    des = TypeDeserializer()
    out, kwargs = [], {"TableName": table}
    while True:
        resp = client.scan(**kwargs)
        out += [{k: des.deserialize(v) for k, v in i.items()} for i in resp["Items"]]
        if "LastEvaluatedKey" not in resp:
            return out
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


def all_tables() -> dict[str, list[dict]]:
    s = get_settings()
    return {t: items(t) for t in (s.geofences_table, s.cells_table, s.devices_table, s.campaigns_table,
                                  s.deliveries_table, s.alerts_table)}


def region_query(rc: str) -> list[dict]:
    return boto3.client("dynamodb").query(
        TableName=get_settings().devices_table, IndexName="by_region",
        KeyConditionExpression="rc = :p", ExpressionAttributeValues={":p": {"S": rc}})["Items"]


def device_item(device_id: str) -> dict | None:
    got = boto3.client("dynamodb").get_item(TableName=get_settings().devices_table, Key={"device_id": {"S": device_id}},
                                            ConsistentRead=True)
    return got.get("Item")


def endpoints() -> dict:
    from moto.sns.models import sns_backends

    return sns_backends[MOTO_ACCOUNT][MOTO_REGION].platform_endpoints


def numbers_and_texts(obj, nums: list, texts: list) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            texts.append(str(k))
            numbers_and_texts(v, nums, texts)
    elif isinstance(obj, (list, set, tuple)):
        for v in obj:
            numbers_and_texts(v, nums, texts)
    elif isinstance(obj, (int, float, Decimal)) and not isinstance(obj, bool):
        nums.append(float(obj))
    elif isinstance(obj, (str, bytes)):
        texts.append(obj if isinstance(obj, str) else obj.decode("latin-1"))


# ---------------------------------------------------------------- erasure
def test_delete_erases_profile_location_region_entry_and_endpoint(api):
    assert call(api, "put", "/v1/geofences/shop", CIRCLE)[0] == 200
    secret = register(api, "d1", "tok-d1-erase")
    register(api, "d2", "tok-d2-stays")
    assert [e["type"] for e in ping(api, "d1", SHOP, secret)["events"]] == ["enter"]
    item = device_item("d1")
    assert {"st", "rc", "rf", "endpoint_arn", "push_token"} <= set(item)
    rc = item["rc"]["S"]
    assert [i["device_id"]["S"] for i in region_query(rc)] == ["d1"]
    arn = item["endpoint_arn"]["S"]
    assert arn in endpoints()

    status, _ = call(api, "delete", "/v1/devices/d1", key=APP_KEY, secret=secret)
    assert status == 204
    assert device_item("d1") is None
    assert region_query(rc) == []  # the GSI entry went with the item
    assert arn not in endpoints()
    assert call(api, "get", "/v1/devices/d1")[0] == 404
    # nothing of d1 is left anywhere but its delivery records (ids, no location)
    for table, rows in all_tables().items():
        for row in rows:
            text = json.dumps(row, default=repr)
            assert "tok-d1-erase" not in text, table
            if table != get_settings().deliveries_table:
                assert '"d1"' not in text, (table, row)
    assert device_item("d2") is not None  # the other device is untouched


def test_only_the_last_accepted_location_is_stored(api):
    deps = container.get_deps()  # every move is stored (by default a move without visits waits for the refresh)
    deps.settings = dataclasses.replace(deps.settings, location_write_res=9)
    secret = register(api, "d1", "tok-history")
    t0 = time.time() - 3600
    places = [(38.4401 + i * 0.00113, -122.7003 - i * 0.00127) for i in range(6)]
    for i, where in enumerate(places):
        assert ping(api, "d1", where, secret, ts=t0 + 600 * i)["accepted"]
    nums: list[float] = []
    texts: list[str] = []
    for rows in all_tables().values():
        numbers_and_texts(rows, nums, texts)
    numbers_and_texts(json.loads(device_item("d1")["st"]["S"]), nums, texts)  # the state's JSON, parsed
    blob = "\n".join(texts)
    for lat, lng in places[:-1]:
        assert lat not in nums and lng not in nums
        assert repr(lat) not in blob and repr(lng) not in blob
    state = json.loads(device_item("d1")["st"]["S"])
    assert (state["lat"], state["lng"]) == places[-1]


# ---------------------------------------------------------------- deliveries
def test_delivery_records_carry_no_coordinates(api):
    assert call(api, "put", "/v1/geofences/shop", CIRCLE)[0] == 200
    assert call(api, "put", "/v1/campaigns/welcome", WELCOME)[0] == 200
    assert call(api, "put", "/v1/campaigns/storm", STORM_CAMPAIGN)[0] == 200
    posted: list[tuple[float, float]] = []
    now = time.time()
    secret = register(api, "shopper", "tok-shopper")
    for where in ((38.40, -122.7003), SHOP):
        ping(api, "shopper", where, secret)
        posted.append(where)
    for device_id, _place, lat, lng, _attrs, consent in STORM_DEVICES:
        sec = register(api, device_id, f"tok-{device_id}", consent)
        if consent is None:
            ping(api, device_id, (lat, lng), sec, ts=now - 300)
            posted.append((lat, lng))
    status, out = call(api, "post", "/v1/weather/alerts", rebased_alert(now))
    assert status == 202 and out["alerts"][0]["status"] == "accepted", out
    assert run_queues(api) >= 1
    status, rec = call(api, "get", f"/v1/weather/alerts/{out['alerts'][0]['id']}")
    assert status == 200 and rec["status"] == "processed", rec

    records = [r for r in items(get_settings().deliveries_table) if str(r["pk"]).startswith("dl_")]
    assert {r["trigger_type"] for r in records} == {"geofence_enter", "weather_alert"}
    assert sum(r["status"] == "sent" for r in records) >= 5
    coords = {c for pair in posted for c in pair}
    for r in records:
        assert not {"lat", "lng", "latitude", "longitude", "location", "st", "coordinates"} & {k.lower() for k in r}
        nums: list[float] = []
        texts: list[str] = []
        numbers_and_texts(r, nums, texts)
        assert not coords & set(nums), r
        blob = " ".join(texts)
        for lat, lng in posted:
            assert not (repr(lat) in blob and repr(lng) in blob), r


# ---------------------------------------------------------------- the sweep
def test_the_sweep_erases_expired_locations_in_dynamodb(dynamo_repos):
    store = dynamo_repos.devices
    now = time.time()
    for i, written in enumerate((now - 31 * DAY, now - 29 * DAY, now - 40 * DAY)):
        did = f"d{i}"
        store.save_profile(Device(did, "ios", f"tok-{did}", consent={"push": True, "location": True}))
        state = LocationState(38.44 + i / 100, -122.7, written, 0)
        state = LocationState(state.lat, state.lng, state.ts, location_cell(state))
        store.save_state(did, store.get_device(did, consistent=True).state_version, state, written)
    rcs = {f"d{i}": device_item(f"d{i}")["rc"]["S"] for i in range(3)}
    before = now - 30 * DAY
    removed, complete = store.expire_locations(before, segment=0, segments=1)
    assert (removed, complete) == (2, True)
    for did in ("d0", "d2"):
        item = device_item(did)
        assert not {"st", "wa", "rc", "rf"} & set(item), item
        assert item["push_token"]["S"] == f"tok-{did}" and item["sv"]["N"] == "2"  # profile kept, version moved on
        assert region_query(rcs[did]) == []
        assert store.get_device(did).state is None
    assert "st" in device_item("d1") and [i["device_id"]["S"] for i in region_query(rcs["d1"])] == ["d1"]
    assert store.expire_locations(before) == (0, True)


def test_the_sweep_by_segments_visits_each_device_once_and_stops_at_its_limit(dynamo_repos):
    store = dynamo_repos.devices
    old = time.time() - 60 * DAY
    for i in range(30):
        did = f"s{i}"
        store.save_profile(Device(did, "ios", "t", consent={"push": True, "location": True}))
        st = LocationState(40.0 + i / 1000, -74.0, old, 0)
        store.save_state(did, 0, LocationState(st.lat, st.lng, st.ts, location_cell(st)), old)
    removed, complete = store.expire_locations(old + 1, limit=7)
    assert (removed, complete) == (7, False)
    total = sum(store.expire_locations(old + 1, segment=s, segments=4)[0] for s in range(4))
    assert total == 23
    assert not [r for r in items(get_settings().devices_table) if "st" in r]


def test_the_scheduled_sweep_runs_through_the_app(api):
    event = api.events.generate_cw_event(source="aws.events", detail_type="Scheduled Event", detail={}, resources=[])
    resp = api.lambda_.invoke("sweep_locations", event)
    assert resp.payload["segments"] == 24 and resp.payload["complete"] is True


# ---------------------------------------------------------------- logs and metrics
def test_app_logs_are_json_with_a_request_id_and_no_personal_data(api, capsys):
    assert call(api, "put", "/v1/geofences/shop", CIRCLE)[0] == 200
    assert call(api, "put", "/v1/campaigns/welcome", WELCOME)[0] == 200
    secret = register(api, "d1", "tok-logged-never")
    capsys.readouterr()
    ping(api, "d1", (38.4302, -122.7003), secret)
    result = ping(api, "d1", SHOP, secret)
    assert len(result["deliveries"]) == 1
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert lines and all({"time", "level", "logger", "message", "request_id"} <= set(line) for line in lines)
    assert all(line["request_id"] for line in lines)
    assert len({line["request_id"] for line in lines}) == 2  # one per request
    for needle in ("38.4401", "122.7003", "38.4302", "tok-logged-never", APP_KEY, ADMIN_KEY, "test-coupon-secret", secret or "∅"):
        assert needle not in out, needle
    emf = [line for line in lines if "_aws" in line]
    by_metric = {m["Name"]: line for line in emf for m in line["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert by_metric["pings_accepted"]["pings_accepted"] == 1 and by_metric["pings_accepted"]["stage"] == "test"
    assert by_metric["events"]["type"] == "enter" and by_metric["events"]["events"] == 1
    assert (by_metric["deliveries"]["status"], by_metric["deliveries"]["deliveries"]) == ("sent", 1)
    assert all(line["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "hexcast" for line in emf)


def test_fanout_messages_carry_queued_at_and_the_sender_reports_the_lag(api, capsys):
    from chalicelib.services import fanout as fanout_service
    from chalicelib.weather import fanout

    (body,) = fanout_service.make_messages("a1", "a1", [], ["nobody"], {}, None, 10, queued_at=time.time() - 2.5)
    assert json.loads(body)["queued_at"] > 0
    sqs_event = api.events.generate_sqs_event(queue_name=fanout.QUEUE_NAME, message_bodies=[body])
    capsys.readouterr()
    api.lambda_.invoke("send_fanout", sqs_event)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    (lag,) = [line for line in lines if "fanout_lag_s" in line]
    assert 2.5 <= lag["fanout_lag_s"][0] < 60
    assert lag["request_id"] == sqs_event["Records"][0]["messageId"]
