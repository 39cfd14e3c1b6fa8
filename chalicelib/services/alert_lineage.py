"""Which lineage an alert belongs to, whatever order a chain's messages arrive in.

A lineage is the chain of messages one hazard produces: the first alert,
its updates and finally its cancellation, linked by CAP ``references``.
Messages may arrive in any order (a feed relay retries, two pollers race, an
update is posted before the alert it updates), so the lineage cannot be
"whatever the first message we saw says". Instead every message files
itself and every id it references under a lineage with a conditional write
(:meth:`~chalicelib.ports.WeatherRepo.add_members`): the first message of a
chain to arrive names the lineage (its oldest reference, else itself), and
each later one — an update, the alert it updated, a cancel that references
only the last update — finds one of its ids already filed and joins that
lineage. A cancellation ends the lineage, so messages of the chain that
arrive after it never push.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalicelib.weather.alerts import Alert, lineage_root

if TYPE_CHECKING:
    from chalicelib.services.deps import Deps


def chain_ids(alert: Alert) -> list[str]:
    """The alert's references (oldest first) and then the alert itself."""
    return [r.id for r in alert.references] + [alert.id]


def resolve_lineage(deps: Deps, alert: Alert, keep_until: float) -> str:
    """:func:`chain_lineages`' first: the lineage the alert goes on with."""
    return chain_lineages(deps, alert, keep_until)[0]


def chain_lineages(deps: Deps, alert: Alert, keep_until: float) -> list[str]:
    """The alert's lineage, filing the alert and its references under it.

    The lineage of the oldest id of the chain already filed wins; with none
    filed, the chain's root (:func:`~chalicelib.weather.alerts.lineage_root`).
    When the chain's ids were filed under several lineages (its messages
    arrived from both ends before the middle), they are one hazard: if any
    of them has ended, the others end too. → The lineage first, then any
    other the chain's ids were filed under.
    """
    ids = chain_ids(alert)
    known = deps.weather.get_members(ids)
    lineage = next((known[i] for i in ids if i in known), None) or lineage_root(alert)
    filed = dict(known)
    if any(i not in known for i in ids):
        filed.update(deps.weather.add_members([i for i in ids if i not in known], lineage, keep_until))
    return _linked(deps, ids, filed, keep_until)


def _linked(deps: Deps, ids: list[str], filed: dict[str, str], keep_until: float) -> list[str]:
    # Two messages of one chain filed at the same moment: the oldest id's
    # lineage (whoever wrote it first) is the one both go on with.
    lineage = filed[ids[0]]
    linked = sorted({filed[i] for i in ids})
    if len(linked) > 1:
        states = deps.weather.get_lineages(linked)
        ended = [(n, st) for n, st in states.items() if st.get("ended")]
        if ended:
            reason = str(ended[0][1].get("ended_reason") or "ended")
            for other in linked:
                if not states.get(other, {}).get("ended"):
                    deps.weather.end_lineage(other, reason, deps.clock(), keep_until)
    return [lineage] + [other for other in linked if other != lineage]


def chains_lineages(deps: Deps, alerts: list[tuple[Alert, float]]) -> dict[str, list[str]]:
    """:func:`chain_lineages` for many alerts (each with its keep-until) in
    a few store calls: one read of every id's membership, the alerts'
    filings worked out in order as if made one after another, then written
    at once (each conditional on the id being unfiled). An alert one of
    whose ids another writer filed meanwhile is filed again on its own,
    reading what that writer filed. → alert id → its lineages."""
    every = sorted({i for alert, _until in alerts for i in chain_ids(alert)})
    known = deps.weather.get_members(every) if every else {}
    filed = dict(known)
    new: dict[str, tuple[str, float]] = {}
    for alert, until in alerts:
        ids = chain_ids(alert)
        lineage = next((filed[i] for i in ids if i in filed), None) or lineage_root(alert)
        for i in ids:
            if i not in filed:
                filed[i] = lineage
                new[i] = (lineage, until)
    written = deps.weather.file_members([(i, lin, until) for i, (lin, until) in new.items()]) if new else set()
    lost = set(new) - written
    out: dict[str, list[str]] = {}
    for alert, until in alerts:
        ids = chain_ids(alert)
        if lost.intersection(ids):
            out[alert.id] = chain_lineages(deps, alert, until)
        else:
            out[alert.id] = _linked(deps, ids, filed, until)
    return out


def lineage_ended(deps: Deps, lineage: str) -> str | None:
    """Why the lineage ended (``cancelled``, ``expired`` …), or None while it runs."""
    state = deps.weather.get_lineages([lineage]).get(lineage)
    if state and state.get("ended"):
        return str(state.get("ended_reason") or "ended")
    return None
