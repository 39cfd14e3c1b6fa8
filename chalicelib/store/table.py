"""One DynamoDB table, as the repositories use it (low-level client, items
as attribute-value dicts).

Everything a repository needs and nothing more: single-item get/put/update/
delete, a conditional write that answers None when its condition did not
hold (a lost race, an item that exists or is gone), the one paginated
``Query``/``Scan`` loop, and batch reads and writes in chunks sent
concurrently on an injected pool, with unprocessed items retried under
:class:`chalicelib.retry.RetryPolicy`. Throttling that botocore's own
retries could not absorb surfaces as :class:`chalicelib.errors.Unavailable`
(HTTP 503: the client retries), whichever call met it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from typing import Any, NamedTuple

from botocore.exceptions import ClientError

from chalicelib.errors import Unavailable
from chalicelib.retry import RetryPolicy
from chalicelib.store.ddb import conditional_failed, transaction_lost

Item = dict[str, Any]
THROTTLED = ("ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded")
BATCH_GET_MAX = 100
BATCH_WRITE_MAX = 25
TRANSACT_MAX = 100


class Page(NamedTuple):
    """One page of a ``Query``/``Scan``: its items, and whether another follows."""

    items: list[Item]
    more: bool


def _throttled() -> Unavailable:
    return Unavailable("the database is throttling; retry shortly")


def chunks(seq: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


class Table:
    """``client``: a botocore DynamoDB client; ``name``: the physical table;
    ``pool``: runs concurrent requests (batch chunks, one query per key);
    ``retry``: how unprocessed batch items are retried."""

    def __init__(self, client: Any, name: str, pool: Executor, retry: RetryPolicy) -> None:
        self.client = client
        self.name = name
        self.pool = pool
        self.retry = retry

    # ------------------------------------------------------------ calls
    def call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        """``client.<operation>(TableName=…, **kwargs)``; throttling →
        :class:`Unavailable`."""
        return self._raw(operation, TableName=self.name, **kwargs)

    def call_if(self, operation: str, **kwargs: Any) -> dict[str, Any] | None:
        """A conditional write: its response, or None when the condition
        did not hold."""
        try:
            return self.call(operation, **kwargs)
        except ClientError as exc:
            if conditional_failed(exc):
                return None
            raise

    def get(self, key: Item, *, consistent: bool = False, **kwargs: Any) -> Item | None:
        return self.call("get_item", Key=key, ConsistentRead=consistent, **kwargs).get("Item")

    def put(self, item: Item, **kwargs: Any) -> dict[str, Any]:
        return self.call("put_item", Item=item, **kwargs)

    def put_if(self, item: Item, condition: str, values: Item | None = None, **kwargs: Any) -> dict[str, Any] | None:
        if values:
            kwargs["ExpressionAttributeValues"] = values
        return self.call_if("put_item", Item=item, ConditionExpression=condition, **kwargs)

    def update(self, key: Item, **kwargs: Any) -> dict[str, Any]:
        return self.call("update_item", Key=key, **kwargs)

    def update_if(self, key: Item, **kwargs: Any) -> dict[str, Any] | None:
        return self.call_if("update_item", Key=key, **kwargs)

    def delete(self, key: Item, **kwargs: Any) -> dict[str, Any]:
        return self.call("delete_item", Key=key, **kwargs)

    def delete_if(self, key: Item, **kwargs: Any) -> dict[str, Any] | None:
        return self.call_if("delete_item", Key=key, **kwargs)

    def transact_if(self, writes: list[Item]) -> bool:
        """``TransactWriteItems``: every write or none. False when it was
        cancelled by a condition that did not hold or a conflicting
        transaction (re-read and retry); throttling → :class:`Unavailable`."""
        try:
            self._raw("transact_write_items", TransactItems=writes)
        except ClientError as exc:
            if transaction_lost(exc):
                return False
            if "Throttl" in str(exc.response.get("CancellationReasons", "")) or "Throttl" in str(exc):
                raise _throttled() from None
            raise
        return True

    def transact_reasons(self, writes: list[Item]) -> list[str] | None:
        """``TransactWriteItems``: None when every write was made; when the
        transaction was cancelled by a condition or a conflicting
        transaction, one cancellation code per write (``"None"`` for a
        write whose own condition held, ``"ConditionalCheckFailed"``,
        ``"TransactionConflict"`` …) — nothing was written. Throttling →
        :class:`Unavailable`."""
        try:
            self._raw("transact_write_items", TransactItems=writes)
        except ClientError as exc:
            if not transaction_lost(exc):
                if "Throttl" in str(exc.response.get("CancellationReasons", "")) or "Throttl" in str(exc):
                    raise _throttled() from None
                raise
            reasons = [str(r.get("Code") or "None") for r in exc.response.get("CancellationReasons", []) or []]
            return reasons if len(reasons) == len(writes) else ["TransactionConflict"] * len(writes)
        return None

    # ------------------------------------------------------------ pages
    def pages(
        self, operation: str = "query", *, page_limit: Callable[[int], int] | None = None, **kwargs: Any
    ) -> Iterator[Page]:
        """The one ``LastEvaluatedKey`` loop: each page's items of a
        ``query`` or ``scan``, the next page requested only when the
        consumer asks for it (stop iterating to stop reading).
        ``page_limit(n)``: the ``Limit`` of the next page, given the ``n``
        items yielded so far (DynamoDB applies a filter after ``Limit``)."""
        seen = 0
        while True:
            if page_limit is not None:
                kwargs["Limit"] = page_limit(seen)
            resp = self.call(operation, **kwargs)
            items = resp.get("Items", [])
            seen += len(items)
            more = "LastEvaluatedKey" in resp
            yield Page(items, more)
            if not more:
                return
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    def items(self, operation: str = "query", **kwargs: Any) -> Iterator[Item]:
        """Every item of every page (lazily)."""
        for page in self.pages(operation, **kwargs):
            yield from page.items

    # ------------------------------------------------------------ batches
    def batch_get(self, keys: Sequence[Item], **kwargs: Any) -> list[Item]:
        """``BatchGetItem`` of any number of keys: chunks of 100 sent
        concurrently; unprocessed keys retried with backoff."""
        if not keys:
            return []
        parts = list(chunks(list(keys), BATCH_GET_MAX))
        if len(parts) == 1:
            return self._get_chunk(parts[0], kwargs)
        return [item for got in self.pool.map(lambda p: self._get_chunk(p, kwargs), parts) for item in got]

    def _get_chunk(self, keys: Sequence[Item], extra: dict[str, Any]) -> list[Item]:
        req: dict[str, Any] = {self.name: {"Keys": list(keys), **extra}}
        got: list[Item] = []
        for _ in self.retry.attempts():
            resp = self._raw("batch_get_item", RequestItems=req)
            got.extend(resp.get("Responses", {}).get(self.name, []))
            req = resp.get("UnprocessedKeys") or {}
            if not req:
                return got
        raise _throttled()

    def batch_write(self, requests: Sequence[Item]) -> None:
        """``BatchWriteItem`` (``PutRequest``/``DeleteRequest`` entries) in
        chunks of 25 sent concurrently; unprocessed items retried with
        backoff."""
        if not requests:
            return
        parts = list(chunks(list(requests), BATCH_WRITE_MAX))
        if len(parts) == 1:
            self._write_chunk(parts[0])
        else:
            list(self.pool.map(self._write_chunk, parts))

    def _write_chunk(self, requests: Sequence[Item]) -> None:
        req: dict[str, Any] = {self.name: list(requests)}
        for _ in self.retry.attempts():
            req = self._raw("batch_write_item", RequestItems=req).get("UnprocessedItems") or {}
            if not req:
                return
        raise _throttled()

    def _raw(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        """A call without ``TableName`` (the batch operations name theirs)."""
        try:
            return getattr(self.client, operation)(**kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code", "") in THROTTLED:
                raise _throttled() from None
            raise
