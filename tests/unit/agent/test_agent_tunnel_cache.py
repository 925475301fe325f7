"""Heartbeats report cloudflared's state from the engine's events, not from an inspect each (issue 23: idle must
be idle): the state read is kept until an event names cloudflared, the agent changed it, or it is old."""

from __future__ import annotations

from flareport_agent.cloudflared import CONTAINER_NAME, MANAGED_LABEL, MANAGED_VALUE
from flareport_agent.tunnelcache import TunnelStateCache
from flareport_common.messages.events import TunnelState

RUNNING = TunnelState(container_state="running", tunnel_id="tun-1")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def event(**attributes: str) -> dict[str, object]:
    return {"Type": "container", "Action": "die", "Actor": {"ID": "abc", "Attributes": attributes}}


def test_a_state_read_is_reported_again_until_it_is_old() -> None:
    clock = Clock()
    cache = TunnelStateCache(max_age_s=120, clock=clock)
    assert cache.current("tun-1") is None, "nothing read yet: read the engine"
    cache.keep(cache.begin(), "tun-1", RUNNING)
    clock.now += 119
    assert cache.current("tun-1") == RUNNING, "no heartbeat in two minutes inspects cloudflared again"
    assert cache.current("tun-2") is None, "another tunnel's state is read afresh"
    clock.now += 1
    assert cache.current("tun-1") is None, "an old state is read again: a missed event hides nothing for long"


def test_an_event_about_cloudflared_makes_the_next_heartbeat_read_it_and_others_do_not() -> None:
    cache = TunnelStateCache(clock=Clock())
    cache.keep(cache.begin(), "tun-1", RUNNING)
    cache.seen(event(name="web", **{"com.example": "x"}))
    assert cache.current("tun-1") == RUNNING, "an application container's event changes nothing"
    cache.seen(event(name="renamed", **{MANAGED_LABEL: MANAGED_VALUE}))
    assert cache.current("tun-1") is None, "cloudflared (by its label) died: read it"
    cache.keep(cache.begin(), "tun-1", RUNNING)
    cache.seen(event(name=CONTAINER_NAME))
    assert cache.current("tun-1") is None, "cloudflared by its name"
    cache.keep(cache.begin(), "tun-1", RUNNING)
    cache.seen({"Type": "container", "Action": "start"})
    assert cache.current("tun-1") is None, "an event that names nobody may be cloudflared's"


def test_a_read_that_began_before_a_change_is_not_kept() -> None:
    cache = TunnelStateCache(clock=Clock())
    ticket = cache.begin()
    cache.forget()  # a command restarted cloudflared while the heartbeat's read was on its way
    cache.keep(ticket, "tun-1", RUNNING)
    assert cache.current("tun-1") is None
