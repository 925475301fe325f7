"""What Flareport will do with what another tool (DockFlare) left on a tunnel, before any agent uses it.

``flareport doctor --tunnel NAME`` reads the tunnel's DNS records and the account's Access apps and asks this
module, with no I/O, the same questions the DNS plan (``dns_plan.adoptable``) and the Access sync
(``access_plan.dockflare_app``) will answer when the rules arrive:

* a proxied CNAME to the tunnel, with no comment, alone on its name: adopted in place (a marker is added);
* a record on such a name that already carries this installation's marker: Flareport's already;
* anything else on a name that points to the tunnel (a comment someone wrote, another record beside it, another
  Flareport instance's marker, a record that is not proxied): a conflict, left untouched until an admin adopts it
  (a manual rule with ``adopt``);
* untagged Access apps named as DockFlare names them (``DockFlare-…``) on such a name: adopted in place when
  ``FLAREPORT_ADOPT_DOCKFLARE_ACCESS`` is set, conflicts otherwise.

The answer is a forecast for the names that rules will want; a name no rule wants is never touched at all.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flareport_dns_worker.access_plan import DOCKFLARE_APP_PREFIX
from flareport_dns_worker.dns_plan import COLLIDING_TYPES, DnsRecord, Wanted, adoptable, owner_of, tunnel_target


@dataclass(slots=True)
class Takeover:
    """Per name pointing to the tunnel: adopted in place, already ours, or a conflict (with why)."""

    adopt: list[str] = field(default_factory=list)
    ours: list[str] = field(default_factory=list)
    conflicts: dict[str, str] = field(default_factory=dict)
    # Domains of DockFlare's Access apps on those names.
    dockflare_apps: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "adopt_in_place": self.adopt,
            "already_ours": self.ours,
            "conflicts": self.conflicts,
            "dockflare_access_apps": self.dockflare_apps,
        }


def _why(records: list[DnsRecord], tunnel_id: str, owner: str) -> str:
    if len(records) > 1:
        return f"{len(records)} records on the name ({', '.join(sorted(r.type for r in records))})"
    record = records[0]
    other = owner_of(record.comment)
    if other is not None and other != owner:
        return f"owned by another Flareport instance ({other!r})"
    if record.comment:
        return f"has a comment someone wrote ({record.comment[:40]!r})"
    if not record.proxied:
        return "not proxied"
    return f"{record.type} to {record.content}, not to {tunnel_target(tunnel_id)}"


def forecast(tunnel_id: str, records: Iterable[DnsRecord], apps: Iterable[Mapping[str, Any]], owner: str) -> Takeover:
    """What the first sync of each name that points to ``tunnel_id`` will do (``records``: all of its zones)."""
    by_name: dict[str, list[DnsRecord]] = defaultdict(list)
    for record in records:
        if record.type in COLLIDING_TYPES:
            by_name[record.name].append(record)
    target = tunnel_target(tunnel_id)
    names = sorted(n for n, rs in by_name.items() if any(r.content == target for r in rs))
    result = Takeover()
    for name in names:
        relevant = by_name[name]
        if any(owner_of(r.comment) == owner for r in relevant):
            result.ours.append(name)
        elif adoptable(Wanted(name, tunnel_id), relevant) is not None:
            result.adopt.append(name)
        else:
            result.conflicts[name] = _why(relevant, tunnel_id, owner)
    wanted = set(names)
    for app in apps:
        domain = str(app.get("domain") or "").lower()
        host = domain.split("/", 1)[0]
        dockflare = str(app.get("name") or "").startswith(DOCKFLARE_APP_PREFIX) and not app.get("tags")
        if dockflare and host in wanted:
            result.dockflare_apps.append(domain)
    result.dockflare_apps.sort()
    return result
