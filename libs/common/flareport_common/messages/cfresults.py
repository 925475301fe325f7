"""The Cloudflare results stream: the dns-worker's outcome of each job, for the reconciler."""

from __future__ import annotations

import msgspec

from flareport_common.messages.base import Message


class CfError(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An error as Cloudflare (or the worker) stated it, scoped to a rule when it concerns one."""

    code: int = 0
    message: str
    hostname: str | None = None
    path: str | None = None
    # "conflict" (foreign record/rule/claim), "invalid" (Cloudflare refused), "zone" (no zone matches), ...
    kind: str = "error"


class CfNote(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Something a job decided about a rule that the operator should see although nothing failed: today only the
    adoption (``kind="adopted"``) of an object Flareport did not create, e.g. a DNS record DockFlare left."""

    hostname: str
    path: str | None = None
    kind: str = "adopted"
    message: str


class JobResult(Message, frozen=True, kw_only=True, tag="job_result"):
    """Outcome of one job. ``ok`` means the target now matches ``version``; ``errors`` may still list
    per-rule problems (conflicts, refused rules) that were left out so the rest could converge.
    """

    job_id: str
    job_type: str
    target: str
    version: str = ""
    ok: bool
    errors: tuple[CfError, ...] = ()
    # Cloudflare writes this job made (0 when the target already matched).
    writes: int = 0
    # How long its Cloudflare calls took to be answered, in all (not the time it waited for the rate limiter, its
    # lease or its turn): the coalescing window grows with it. None from a worker that does not say.
    cloudflare_ms: int | None = None
    drift_repaired: bool = False
    notes: tuple[CfNote, ...] = ()


class TunnelEnsured(Message, frozen=True, kw_only=True, tag="tunnel_ensured"):
    """The tunnel of an agent exists; the token goes to the agent in a ``start_tunnel`` command."""

    job_id: str
    agent_id: str
    ok: bool
    tunnel_id: str | None = None
    tunnel_name: str | None = None
    token: str | None = None  # only from a worker of an older release: the token itself, in clear
    # Where the token waits for the agent (``Keys.agent_secret``): the result stream never carries it.
    token_ref: str | None = None
    created: bool = False
    error: CfError | None = None


CfResultMessage = JobResult | TunnelEnsured
