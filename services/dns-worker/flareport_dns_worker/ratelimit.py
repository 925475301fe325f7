"""The Cloudflare rate limit, shared by every dns-worker replica through Redis.

Cloudflare allows ``N`` requests per window (1,200 per 5 minutes) per token and answers 429 past it. Every
call — read or write — is first admitted by one Lua script (``lua/take_token.lua``), so that replicas never race;
the script reads Redis' own clock, so replica clocks do not matter.

The rule is a sliding window: at most ``B`` calls in any span of ``S``, where the budget ``B`` is ``N`` less a 5%
margin and the span ``S`` the window plus 5%. Redis keeps the times of the calls admitted within the last span;
a call is admitted when fewer than ``B`` of them are younger than ``S``, else it waits until the oldest that
counts leaves the span. Whatever windows Cloudflare counts in (fixed ones starting wherever they like, or sliding
ones), one of them holds at most ``B < N`` of our calls, and the margins absorb the jitter between admitting a
call and Cloudflare counting it: the span's extra 5% covers a call that reaches Cloudflare later than calls
admitted after it (so Cloudflare sees them closer together than we admitted them), the budget's 5% covers calls
bunched by network or event-loop delays.

No limiter that keeps to that rule admits any call earlier: a backlog of ``2,100`` calls with ``N = 1,200`` goes
out in two windows (the first ``B`` at once, the rest one span later), where a token bucket that refills
steadily (an earlier version, with a tenth of the budget as its burst) needed nearly twice as long.

Cloudflare also refuses more than 200 requests per second from one IP address. The per-second cap keeps to it: at
most ``budget_of(per_second)`` calls (190) in flight or ended within the last ``span_seconds(1)`` (1.05 s), counted
over every replica as if they all called from one address (the safe reading: replicas behind one NAT do). Counting
a call until a span after it *ended*, not after it was admitted, is what makes the cap hold whatever the network
does: Cloudflare counts a call when it arrives, somewhere between its admission and its end, so any second
Cloudflare looks at holds only calls the cap still counted when the last of them was admitted. (Counted from
admission, a first burst slowed by new TLS connections could reach Cloudflare in the same second as the next
burst on warm ones.) A call in flight counts until its ``hold`` (the request timeout: it cannot reach Cloudflare
later), so a replica that dies mid-call frees its calls' places then. The cap binds only where the window's budget
would let calls go faster, at the start of a fleet's first window: 1,140 calls admitted at once would otherwise go
as fast as the workers make them (more than 300 a second against a fast Cloudflare).

Cloudflare counts its budget per user, over the dashboard and every tool, where the window above counts only our
calls. Every answer's ``Ratelimit`` header (``ratelimit_header``) therefore becomes a standing every replica keeps
to as well (``end_call.lua`` writes it, ``take_token.lua`` spends it): the requests Cloudflare says are left, less
a reserve for everyone else (5% of that limit's quota) and less the calls admitted after the answered one (it may
not have counted them yet); at none left, calls wait for the window's reset. Answers arriving out of order never
raise it within one window.

A 429 (someone else spent the budget faster than the standing could tell) sets ``pause-until`` for everyone: the
script refuses every call until then, so all replicas stop together and resume after ``Retry-After``.

Within a process, waiting callers ask in turn, urgent jobs' first (``turns``): when the budget runs out, the
calls that carry a whole zone's DNS changes, or create a tunnel, are not queued behind every configuration PUT.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from flareport_common.keys import Keys
from flareport_dns_worker.metrics import CLOUDFLARE_REMAINING, RATE_LIMIT_WAIT_SECONDS, RATE_LIMIT_WAITS
from flareport_dns_worker.ratelimit_header import Standing
from flareport_dns_worker.scripts import EndCall, PauseCalls, TakeToken
from flareport_dns_worker.turns import URGENT, Turns

log = structlog.get_logger(__name__)

# The span's margin over the window, as a fraction of the window.
SPAN_MARGIN = 0.05


def budget_of(requests: int) -> int:
    """The calls admitted in any span: ``requests`` less the margin."""
    return max(1, requests - max(1, requests // 20)) if requests > 1 else 1


def reserve_of(requests: int) -> int:
    """What a limit of ``requests`` leaves to others: the margin ``budget_of`` keeps."""
    return requests - budget_of(requests)


def span_seconds(window_seconds: float) -> float:
    """The span a budget is counted over: the window plus its margin."""
    return window_seconds * (1 + SPAN_MARGIN)


def per_second_cap(per_second: int) -> tuple[int, float]:
    """The per-second cap as (calls, span in seconds): ``per_second`` less the margin over a second and its margin;
    (0, 0.0) when ``per_second`` is 0 (no cap)."""
    if per_second <= 0:
        return 0, 0.0
    return budget_of(per_second), span_seconds(1.0)


@dataclass(frozen=True)
class Admission:
    """An admitted call: its ticket and serial (to end it with ``RateLimiter.ended``) and how long it waited."""

    ticket: str
    serial: int
    waited: float = 0.0


class RateLimiter:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        requests: int,
        window_seconds: float,
        per_second: int = 0,
        hold_seconds: float = 60.0,
    ) -> None:
        self._redis = redis
        self._keys = keys
        # An admitted call reaches Cloudflare a moment later, and those moments jitter: a small margin in calls
        # (5%, at least one) keeps requests bunched by network or event-loop delays inside Cloudflare's count.
        self.budget = budget_of(requests)
        self.span_ms = max(1, round(span_seconds(window_seconds) * 1000))
        # The per-second cap (0: none), with the same margins.
        self.second_budget, second_span = per_second_cap(per_second)
        self.second_span_ms = round(second_span * 1000)
        self.hold_ms = max(1, round(hold_seconds * 1000))
        # What Cloudflare's standing must leave to everyone else (the dashboard, other tools): our own margin.
        self.reserve = reserve_of(requests)
        self._take = TakeToken(redis)
        self._end = EndCall(redis)
        self._pause = PauseCalls(redis)
        # Tickets unique across replicas and restarts: a random head per limiter, then a counter.
        self._head = secrets.token_hex(6)
        self._serial = itertools.count(1)
        # One caller of this process asks at a time, in the order they came (urgent jobs' first, ``turns``):
        # waiting callers would otherwise all wake when the oldest call leaves the span, and all but one ask again
        # in vain.
        self._turns = Turns()

    def ticket(self) -> str:
        """A new call's ticket."""
        return f"{self._head}:{next(self._serial)}"

    async def acquire(self) -> Admission:
        """Wait until a call is admitted. The caller ends it with ``ended`` once Cloudflare answered (or the call
        failed), else it keeps its place in the per-second cap until its hold."""
        started = time.monotonic()
        waited = False
        ticket = self.ticket()
        async with self._turns.turn(urgent=URGENT.get()):
            while True:
                answer = await self.try_acquire(ticket)
                if isinstance(answer, Admission):
                    break
                wait = answer
                waited = True
                # Re-ask at least every 5 s: a pause can be lifted early only by expiring, but a long wait
                # computed now may shrink if the limit's settings change with a redeploy.
                await asyncio.sleep(min(wait, 5.0))
        seconds = time.monotonic() - started
        if waited:
            RATE_LIMIT_WAITS.inc()
            RATE_LIMIT_WAIT_SECONDS.inc(seconds)
        return Admission(ticket, answer.serial, seconds)

    async def try_acquire(self, ticket: str) -> Admission | float:
        """Admit the call ``ticket`` if the limits allow it now, else return the seconds to wait before asking
        again."""
        keys = self._keys
        wait_ms, serial = await self._take(
            keys.cf_rate_calls,
            keys.cf_rate_bucket,
            keys.cf_pause_until,
            keys.cf_rate_recent,
            keys.cf_rate_standing,
            keys.cf_rate_serial,
            budget=self.budget,
            span_ms=self.span_ms,
            second_budget=self.second_budget,
            second_span_ms=self.second_span_ms,
            ticket=ticket,
            hold_ms=self.hold_ms,
        )
        return Admission(ticket, serial) if wait_ms <= 0 else wait_ms / 1000

    async def ended(self, admission: Admission, standing: Standing | None = None) -> None:
        """The call ended (answered, refused or failed): it counts for the per-second cap one span more, and
        ``standing``, Cloudflare's ``Ratelimit`` header in its answer, is kept to from now."""
        if not self.second_budget and standing is None:
            return
        if standing is not None:
            CLOUDFLARE_REMAINING.set(standing.remaining)
        keys = self._keys
        try:
            await self._end(
                keys.cf_rate_recent,
                keys.cf_rate_standing,
                keys.cf_rate_serial,
                ticket=admission.ticket if self.second_budget else "",
                serial=admission.serial,
                remaining=None if standing is None else standing.remaining,
                reset_ms=0 if standing is None else standing.reset_seconds * 1000,
                reserve=reserve_of(standing.quota) if standing is not None and standing.quota else self.reserve,
            )
        except (RedisError, OSError) as error:
            # The call's outcome matters more than its bookkeeping: it keeps its place until its hold instead.
            log.warning("cloudflare.rate_limit.end_failed", ticket=admission.ticket, error=str(error))

    async def pause(self, seconds: float) -> None:
        """Stop every replica's calls for ``seconds`` (a 429's Retry-After)."""
        await self._pause(self._keys.cf_pause_until, pause_ms=max(1, int(seconds * 1000)))
