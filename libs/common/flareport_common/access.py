"""The ``access.*`` labels with DockFlare's meaning, resolved to the Access app a rule gets. Pure, no I/O.

DockFlare 3.1.2 is the specification (docs/labels.md, "Access"); where its behaviour is an accident the stricter
reading is taken and the rule gets an error naming the label. In short, for one rule:

* **Groups win.** ``access.groups`` (a comma list; else ``access.group``) names access groups; with a group,
  ``access.policy`` and the settings labels (name, session, launcher, IdPs, auto-redirect) are ignored, and the
  app's session comes from the first group. The group id ``bypass`` is ``public-default-bypass``.
* ``access.policy=bypass`` is the system group ``public-default-bypass`` (bypass, everyone: public);
  ``authenticate`` is ``authenticated-default`` (allow login by One-time PIN, require the Cloudflare account
  owner's email); ``default_tld`` means no app (the zone's wildcard app, if any, applies); ``custom`` takes whole
  policies from ``access.custom_rules`` (a JSON list of ``{decision, include, exclude?, require?, name?}``).
* No policy and no group: no app, whatever settings labels say (DockFlare creates none either).

Fail closed: an unknown group, an unknown policy value, ``custom`` without rules, custom rules without ``custom``,
a public group mixed with others, ``authenticate`` while the owner's email or the One-time PIN login method is
unknown, or Access on a regular-expression path: ``AccessError``, and the reconciler publishes nothing for the
hostname. Never a weaker policy in its place.

An app has either reusable policies (one per group) or inline ones (``custom``), never both: Cloudflare refuses
the mix. Index precedence (``N.access.*`` against the base labels) is the agent's label parser's business; this
module sees one rule's labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flareport_common.messages.cfjobs import AccessPolicyDef, DesiredAccessApp, ReusablePolicyRef
from flareport_common.messages.rules import AccessSpec

PUBLIC_BYPASS = "public-default-bypass"
AUTHENTICATED = "authenticated-default"
SYSTEM_GROUPS = (PUBLIC_BYPASS, AUTHENTICATED)
LEGACY_BYPASS = "bypass"  # DockFlare's older group id for the public bypass
DEFAULT_SESSION = "24h"
EVERYONE: tuple[dict[str, Any], ...] = ({"everyone": {}},)
# A path with any of these is a regular expression to cloudflared; Access protects a literal path prefix only.
REGEX_CHARACTERS = frozenset("^$*+?()[]{}|\\")


class AccessError(Exception):
    """The rule's Access labels cannot be resolved with certainty: ``label`` (short name, e.g. ``access.group``)
    and ``reason`` say why. Nothing is published for the hostname."""

    def __init__(self, label: str, reason: str) -> None:
        super().__init__(f"{label}: {reason}")
        self.label = label
        self.reason = reason


@dataclass(frozen=True, slots=True)
class AccessFacts:
    """What ``authenticated-default`` needs from the Cloudflare account: the owner's email (configured, or found
    by the dns-worker as DockFlare does) and the id of the One-time PIN login method."""

    owner_email: str | None = None
    otp_idp_id: str | None = None


def system_group(group_id: str, facts: AccessFacts) -> AccessPolicyDef:
    """The policy of a system group; ``AccessError`` when ``authenticated-default`` cannot be built."""
    if group_id == PUBLIC_BYPASS:
        return AccessPolicyDef(name=PUBLIC_BYPASS, decision="bypass", include=EVERYONE)
    if not facts.owner_email:
        raise AccessError(
            "access.policy",
            "authenticate (group authenticated-default) needs the Cloudflare account owner's email: set "
            "FLAREPORT_ACCESS_OWNER_EMAIL, or give the Cloudflare token Account Members read so it can be found",
        )
    if not facts.otp_idp_id:
        raise AccessError(
            "access.policy",
            "authenticate (group authenticated-default) needs the One-time PIN login method, which is not set up "
            "in this Zero Trust organisation (Settings > Authentication > Login methods)",
        )
    return AccessPolicyDef(
        name=AUTHENTICATED,
        decision="allow",
        include=({"login_method": {"id": facts.otp_idp_id}},),
        require=({"email": {"email": facts.owner_email}},),
    )


def is_regex_path(path: str | None) -> bool:
    return path is not None and any(c in REGEX_CHARACTERS for c in path)


def group_ids(spec: AccessSpec) -> tuple[str, ...]:
    """The groups a spec takes effect through, in order: its own (``bypass`` read as the public group), else the
    system group its policy stands for."""
    seen: dict[str, None] = {}
    for raw in spec.groups:
        group = raw.strip()
        seen[PUBLIC_BYPASS if group.lower() == LEGACY_BYPASS else group] = None
    seen.pop("", None)
    if seen:
        return tuple(seen)
    if spec.policy == "bypass":
        return (PUBLIC_BYPASS,)
    if spec.policy == "authenticate":
        return (AUTHENTICATED,)
    return ()


def wants_app(spec: AccessSpec | None) -> bool:
    """Whether these labels ask for an app at all (before anything is resolved)."""
    if spec is None:
        return False
    return bool(group_ids(spec)) or spec.policy == "custom" or bool(spec.custom_rules)


def resolve(
    hostname: str,
    path: str | None,
    spec: AccessSpec | None,
    groups: Mapping[str, AccessPolicyDef],
    facts: AccessFacts,
) -> DesiredAccessApp | None:
    """The app these labels ask for, None for no app, or ``AccessError``."""
    if spec is None:
        return None
    ids = group_ids(spec)
    if not ids and spec.policy != "custom" and spec.custom_rules:
        raise AccessError(
            "access.custom_rules", "custom rules take effect only with access.policy=custom (DockFlare's meaning)"
        )
    if not ids and spec.policy != "custom":
        return None  # default_tld, or settings labels alone: no app, as in DockFlare
    if is_regex_path(path):
        raise AccessError(
            "path",
            f"{path!r} is a regular expression: an Access app protects a literal path prefix, so a regex path "
            "cannot be protected; use a plain path such as /admin",
        )
    if ids:
        if PUBLIC_BYPASS in ids and len(ids) > 1:
            others = ", ".join(i for i in ids if i != PUBLIC_BYPASS)
            raise AccessError(
                "access.groups",
                f"{PUBLIC_BYPASS} makes the service public to everyone, so the other groups ({others}) would have "
                "no effect; name either the public group or the others",
            )
        refs = tuple(ReusablePolicyRef(group_id=g, policy=_group(g, groups, facts)) for g in ids)
        first = ids[0]
        return DesiredAccessApp(
            hostname=hostname,
            path=path,
            session_duration=refs[0].policy.session_duration or DEFAULT_SESSION,
            allowed_idps=(facts.otp_idp_id,) if first == AUTHENTICATED and facts.otp_idp_id else (),
            reusable=refs,
        )
    if not spec.custom_rules:
        raise AccessError("access.custom_rules", "access.policy=custom needs access.custom_rules (a list of policies)")
    return DesiredAccessApp(
        hostname=hostname,
        path=path,
        name=spec.name,
        session_duration=spec.session_duration or DEFAULT_SESSION,
        app_launcher_visible=bool(spec.app_launcher_visible),
        allowed_idps=spec.allowed_idps,
        auto_redirect_to_identity=bool(spec.auto_redirect_to_identity),
        inline=tuple(custom_policy(item, i) for i, item in enumerate(spec.custom_rules)),
    )


def _group(group_id: str, groups: Mapping[str, AccessPolicyDef], facts: AccessFacts) -> AccessPolicyDef:
    if group_id in SYSTEM_GROUPS:
        return system_group(group_id, facts)
    found = groups.get(group_id)
    if found is None:
        raise AccessError(
            "access.group",
            f"access group {group_id!r} does not exist: create it with that id (API, `flareport access-groups "
            "create --id`, or the web UI); until then nothing is published for this hostname",
        )
    if not found.include:
        # Cloudflare needs an include rule; "everyone" in its place would be far weaker than an admin meant.
        raise AccessError("access.group", f"access group {group_id!r} has no include rule: give it one")
    return found


_DECISIONS = ("allow", "deny", "bypass", "non_identity")


def custom_policy(item: Mapping[str, Any], index: int) -> AccessPolicyDef:
    """One policy of ``access.custom_rules`` (already checked for shape by flareport_common.validate)."""
    decision = item.get("decision")
    include = item.get("include")
    if decision not in _DECISIONS or not isinstance(include, list | tuple) or not include:
        raise AccessError(
            "access.custom_rules",
            f"policy {index} needs a decision ({', '.join(_DECISIONS)}) and a non-empty include list",
        )
    return AccessPolicyDef(
        name=str(item.get("name") or f"custom {index + 1}"),
        decision=decision,
        include=tuple(include),
        exclude=tuple(item.get("exclude") or ()),
        require=tuple(item.get("require") or ()),
    )


def group_definition(raw: Mapping[str, Any], group_id: str) -> AccessPolicyDef:
    """An admin's access group (as the reconciler stores it) as the policy it stands for."""
    return AccessPolicyDef(
        name=str(raw.get("name") or group_id),
        decision=raw.get("decision", "allow"),
        include=tuple(raw.get("include") or ()),
        exclude=tuple(raw.get("exclude") or ()),
        require=tuple(raw.get("require") or ()),
        session_duration=raw.get("session_duration"),
    )
