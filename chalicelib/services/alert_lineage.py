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
    """The alert's lineage, filing the alert and its references under it.

    The lineage of the oldest id of the chain already filed wins; with none
    filed, the chain's root (:func:`~chalicelib.weather.alerts.lineage_root`).
    """
    ids = chain_ids(alert)
    known = deps.weather.get_members(ids)
    lineage = next((known[i] for i in ids if i in known), None) or lineage_root(alert)
    if all(known.get(i) == lineage for i in ids):
        return lineage
    filed = deps.weather.add_members([i for i in ids if i not in known], lineage, keep_until)
    # Two messages of one chain filed at the same moment: the oldest id's
    # lineage (whoever wrote it first) is the one both go on with.
    return next((filed.get(i) or known[i] for i in ids if i in filed or i in known), lineage)


def lineage_ended(deps: Deps, lineage: str) -> str | None:
    """Why the lineage ended (``cancelled``, ``expired`` …), or None while it runs."""
    state = deps.weather.get_lineages([lineage]).get(lineage)
    if state and state.get("ended"):
        return str(state.get("ended_reason") or "ended")
    return None
