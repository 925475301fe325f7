"""The backup document (``GET /api/v1/backup``, ``POST /api/v1/restore``) and the restore report.

One versioned JSON document holds the admin's state: manual rules, access groups, and each agent's record as the
admin shaped it (name, enrolment, publishing policy). It never holds a secret: no agent key (nor its hash), no
tunnel token, no master key. ``redo`` says, in words, what a restored deployment needs again.

The document's objects are strict (unknown fields refused) so a restore of a hand-edited file names a typo as a
field instead of dropping the setting; the document's own envelope checks its format name and version.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, Literal

import msgspec

from flareport_api.schemas import AccessGroupRequest, ChosenGroupId, RuleInput

FORMAT: Final = "flareport-backup"
FORMAT_VERSION: Final = 1


class BackupManualRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    rule_id: str
    rule: RuleInput
    agent_id: str | None = None
    tunnel_id: str | None = None


class BackupAccessGroup(AccessGroupRequest, frozen=True, kw_only=True, forbid_unknown_fields=True):
    group_id: ChosenGroupId


class BackupAgent(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An agent as the admin shaped it; its keys are not here (a restored deployment issues new ones)."""

    agent_id: str
    display_name: str
    hostname: str = ""  # the Docker host it ran on, as it reported it: which machine needs a new key
    tunnel_id: str | None = None
    tunnel_name: str | None = None
    allowed_zones: tuple[str, ...] = ()
    allowed_suffixes: tuple[str, ...] = ()
    allow_wildcard: bool = False
    allow_apex: bool = False
    origin_allow: tuple[str, ...] = ()


class Backup(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    format: Literal["flareport-backup"]
    format_version: Literal[1]
    created_at: datetime
    source_prefix: str  # the Redis key prefix of the deployment it came from
    manual_rules: tuple[BackupManualRule, ...] = ()
    access_groups: tuple[BackupAccessGroup, ...] = ()
    agents: tuple[BackupAgent, ...] = ()
    redo: tuple[str, ...] = ()  # what a restore cannot bring back, in words


class RestoreItem(msgspec.Struct, frozen=True, kw_only=True):
    """What happens (dry run) or happened (applied) to one object of the document."""

    kind: Literal["access_group", "manual_rule", "agent"]
    id: str
    action: Literal["create", "created", "unchanged", "conflict", "missing"]
    notes: tuple[str, ...] = ()


class RestoreReport(msgspec.Struct, frozen=True, kw_only=True):
    applied: bool
    source_prefix: str
    created_at: datetime
    objects: tuple[RestoreItem, ...]
    summary: dict[str, int]
    redo: tuple[str, ...] = ()
