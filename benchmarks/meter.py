"""Count what DynamoDB would bill, from botocore event hooks on the client.

moto does not report consumed capacity reliably, so units are computed
from item sizes with DynamoDB's published rules:

* item size = Σ (attribute name bytes + value bytes); S: UTF-8 bytes; N:
  ⌈significant digits / 2⌉ + 1; B: raw bytes; BOOL/NULL: 1; M/L: 3 bytes +
  1 byte per element + the elements (map keys count as names).
* reads: GetItem / each BatchGetItem key: ⌈size / 4 KB⌉ units (a missing
  item still costs 1), × 0.5 when eventually consistent. Query / Scan: the
  summed size of the items read, ⌈/ 4 KB⌉ (at least 1), × 0.5 when
  eventually consistent — so an empty Query costs 0.5.
* writes: PutItem / UpdateItem / each BatchWriteItem put: ⌈max(size before,
  size after) / 1 KB⌉ (at least 1); DeleteItem: the size before. A failed
  condition is still billed (size before).

The "before" and "after" images of written items are read through a second
client without hooks (not counted). Each counted call records its start
and end time, so overlapping calls can be grouped into sequential waves.
"""

from __future__ import annotations

import math
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field


# ------------------------------------------------------------ item sizes
def _number_size(text: str) -> int:
    digits = text.lstrip("+-").lower().split("e")[0].replace(".", "").strip("0")
    return (len(digits) + 1) // 2 + 1


def value_size(v: dict) -> int:
    (t, x), = v.items()
    if t == "S":
        return len(x.encode())
    if t == "N":
        return _number_size(str(x))
    if t == "B":
        return len(x)
    if t in ("BOOL", "NULL"):
        return 1
    if t == "SS":
        return sum(len(s.encode()) for s in x)
    if t == "NS":
        return sum(_number_size(str(s)) for s in x)
    if t == "BS":
        return sum(len(b) for b in x)
    if t == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(e) for k, e in x.items())
    if t == "L":
        return 3 + sum(1 + value_size(e) for e in x)
    raise ValueError(f"unknown DynamoDB type {t}")


def item_size(item: dict | None) -> int:
    if not item:
        return 0
    return sum(len(k.encode()) + value_size(v) for k, v in item.items())


def read_units(size: int, consistent: bool) -> float:
    return max(1, math.ceil(size / 4096)) * (1.0 if consistent else 0.5)


def write_units(size: int) -> float:
    return float(max(1, math.ceil(size / 1024)))


# ------------------------------------------------------------ the meter
@dataclass
class Call:
    op: str
    start: float
    end: float
    rru: float
    wru: float
    detail: str = ""


@dataclass
class Meter:
    """Hooks a boto3 DynamoDB client; ``counting`` switches recording on."""

    client: object
    peek: object  # same endpoint, no hooks: reads item images uncounted
    counting: bool = False
    calls: list[Call] = field(default_factory=list)
    #: optional ``(table, item_before, item_after) -> str`` naming why an
    #: UpdateItem/PutItem was made; kept as ``Call.detail``
    classify: object = None
    hook_cpu: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _keys: dict = field(default_factory=dict)
    _local: threading.local = field(default_factory=threading.local)

    def install(self) -> "Meter":
        ev = self.client.meta.events
        ev.register("provide-client-params.dynamodb.*", self._before)
        ev.register("after-call.dynamodb.*", self._after)
        return self

    @property
    def in_hook(self) -> bool:
        return getattr(self._local, "in_hook", False)

    # -- helpers -------------------------------------------------------
    def _key_names(self, table: str) -> list[str]:
        names = self._keys.get(table)
        if names is None:
            desc = self.peek.describe_table(TableName=table)["Table"]
            names = [k["AttributeName"] for k in desc["KeySchema"]]
            self._keys[table] = names
        return names

    def _item(self, table: str, key: dict) -> dict | None:
        return self.peek.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")

    def _image(self, table: str, key: dict) -> int:
        return item_size(self._item(table, key))

    def _key_of(self, table: str, item: dict) -> dict:
        return {k: item[k] for k in self._key_names(table)}

    def _add_hook_cpu(self, t_cpu: float) -> None:
        dt = time.thread_time() - t_cpu
        with self._lock:
            self.hook_cpu += dt

    # -- hooks -----------------------------------------------------------
    def _before(self, params, model, context, **kwargs):
        if not self.counting:
            return None
        t_cpu = time.thread_time()
        self._local.in_hook = True
        try:
            op = model.name
            before = None
            if op in ("PutItem", "UpdateItem", "DeleteItem"):
                t = params["TableName"]
                key = params["Key"] if "Key" in params else self._key_of(t, params["Item"])
                before = (t, key, self._item(t, key))
            elif op == "BatchWriteItem":
                before = []
                for t, reqs in params["RequestItems"].items():
                    for r in reqs:
                        if "PutRequest" in r:
                            item = r["PutRequest"]["Item"]
                            before.append((t, self._image(t, self._key_of(t, item)), item_size(item)))
                        else:
                            before.append((t, self._image(t, r["DeleteRequest"]["Key"]), 0))
            context["meter"] = {"op": op, "params": params, "before": before, "t0": time.perf_counter()}
        finally:
            self._local.in_hook = False
            self._add_hook_cpu(t_cpu)
        return None

    def _after(self, http_response, parsed, model, context, **kwargs):
        m = context.get("meter")
        if m is None:
            return
        t1 = time.perf_counter()
        t_cpu = time.thread_time()
        self._local.in_hook = True
        try:
            rru, wru, detail = self._units(m["op"], m["params"], parsed, m["before"])
        finally:
            self._local.in_hook = False
            self._add_hook_cpu(t_cpu)
        with self._lock:
            self.calls.append(Call(m["op"], m["t0"], t1, rru, wru, detail))

    def _units(self, op, params, parsed, before) -> tuple[float, float, str]:
        failed = "Error" in parsed
        if op == "GetItem":
            return read_units(item_size(parsed.get("Item")), bool(params.get("ConsistentRead"))), 0.0, ""
        if op == "BatchGetItem":
            rru = 0.0
            for t, req in params["RequestItems"].items():
                consistent = bool(req.get("ConsistentRead"))
                got = parsed.get("Responses", {}).get(t, [])
                unprocessed = len(parsed.get("UnprocessedKeys", {}).get(t, {}).get("Keys", []))
                rru += sum(read_units(item_size(i), consistent) for i in got)
                rru += (len(req["Keys"]) - len(got) - unprocessed) * read_units(0, consistent)
            keys = [k for req in params["RequestItems"].values() for k in req["Keys"]]
            return rru, 0.0, _key_kinds(keys)
        if op in ("Query", "Scan"):
            size = sum(item_size(i) for i in parsed.get("Items", []))
            return read_units(size, bool(params.get("ConsistentRead"))), 0.0, ""
        if op in ("PutItem", "UpdateItem", "DeleteItem"):
            t, key, old = before
            if failed or op == "DeleteItem":
                return 0.0, write_units(item_size(old)), "failed" if failed else ""
            new = self._item(t, key)
            detail = self.classify(t, old, new) if self.classify else ""
            return 0.0, write_units(max(item_size(old), item_size(new))), detail
        if op == "BatchWriteItem":
            return 0.0, sum(write_units(max(old, new)) for _, old, new in before), ""
        return 0.0, 0.0, ""

    # -- reports ---------------------------------------------------------
    def take(self) -> list[Call]:
        with self._lock:
            out, self.calls = self.calls, []
        return out


def _key_kinds(keys: list[dict]) -> str:
    """A label for the keys of a batch read: the sort keys' prefixes (up to
    the first '#'), e.g. ``G,META``; empty when the table has no sort key."""
    kinds = set()
    for k in keys:
        for name, v in k.items():
            if name == "sk" and "S" in v:
                kinds.add(v["S"].split("#")[0])
    return ",".join(sorted(kinds))


def waves(calls: list[Call]) -> int:
    """Sequential round trips: groups of calls whose [start, end] overlap
    (calls in flight together are one wave)."""
    spans = sorted((c.start, c.end) for c in calls)
    n, end = 0, -math.inf
    for s, e in spans:
        if s > end:
            n += 1
            end = e
        else:
            end = max(end, e)
    return n


class MotoCpu:
    """CPU time spent inside moto's emulation (per thread, summed), so the
    app's own CPU is the process CPU minus this and minus the meter's hooks.

    ``latency_s`` is slept (GIL released) before each emulated call, like a
    network round trip: in-process, moto would otherwise run a call to the
    end before another thread gets the GIL, and calls issued together would
    not overlap in time.
    """

    def __init__(self, meter: Meter, latency_s: float = 0.010) -> None:
        self.meter = meter
        self.latency_s = latency_s
        self.seconds = 0.0
        self._lock = threading.Lock()

    @contextmanager
    def patched(self):
        from moto.core.botocore_stubber import BotocoreStubber

        original = BotocoreStubber.__call__
        cpu = self

        def timed(stub, event_name, request, **kwargs):
            if cpu.meter.in_hook:
                return original(stub, event_name, request, **kwargs)
            if cpu.latency_s and cpu.meter.counting:
                time.sleep(cpu.latency_s)
            t = time.thread_time()
            try:
                return original(stub, event_name, request, **kwargs)
            finally:
                dt = time.thread_time() - t
                with cpu._lock:
                    cpu.seconds += dt

        BotocoreStubber.__call__ = timed
        try:
            yield self
        finally:
            BotocoreStubber.__call__ = original

