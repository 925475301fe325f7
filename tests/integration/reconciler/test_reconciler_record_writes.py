"""The read model's compare-and-set writes (``records``) when another writer gets between the read and the write.

An agent's record and the rule documents are read, changed in Python and written only if still as read. Here
the other writer writes in that gap (from inside the change, through a second client), and nothing either of them
wrote may be lost.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta

import pytest
import redis
import redis.asyncio as aioredis

from flareport_cli.localredis import LocalRedis
from flareport_common.keys import Keys
from flareport_common.messages.cfresults import JobResult
from flareport_common.messages.events import TunnelState
from flareport_common.readmodel import AgentRecord, RuleRecord
from flareport_reconciler import agents, records
from flareport_reconciler.rules import result_change, with_result

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def other_writer(redis_server: LocalRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


async def test_a_heartbeat_and_a_rename_written_at_the_same_moment_both_stay_in_the_agent_record(
    redis: aioredis.Redis, keys: Keys, other_writer: redis.Redis
) -> None:
    old = AgentRecord(agent_id="a1", display_name="old", last_seen=T0)
    await records.update_agent(redis, keys, "a1", lambda _: old)
    running = TunnelState(container_state="running")
    seen = agents.seen("a1", T0 + timedelta(seconds=15), tunnel=running)
    calls = 0

    def heartbeat_racing_a_rename(current: AgentRecord | None) -> AgentRecord | None:
        nonlocal calls
        calls += 1
        if calls == 1:  # the rename lands between the heartbeat's read and its write
            assert current is not None
            renamed = AgentRecord(agent_id="a1", display_name="new", last_seen=T0)
            other_writer.set(keys.agent("a1"), records.encode(renamed))
        return seen(current)

    await records.record_contact(redis, keys, "a1", T0 + timedelta(seconds=15), heartbeat_racing_a_rename)

    stored = records.decode_agent(records.raw_bytes(await redis.get(keys.agent("a1"))))
    assert stored is not None
    assert (stored.display_name, stored.last_seen, stored.tunnel) == ("new", T0 + timedelta(seconds=15), running), (
        "the heartbeat was applied on top of the rename, not instead of it"
    )
    assert calls == 2, "the heartbeat read the record again after the rename"
    assert await redis.zscore(keys.agents_last_seen, "a1") == (T0 + timedelta(seconds=15)).timestamp()
    assert await redis.sismember(keys.agents_index, "a1")


@pytest.mark.parametrize("after", [timedelta(milliseconds=300), timedelta(minutes=5)], ids=["in a burst", "later"])
async def test_a_heartbeat_that_changes_nothing_but_the_time_moves_only_the_last_seen_set(
    redis: aioredis.Redis, keys: Keys, after: timedelta
) -> None:
    # The time is kept in the set (the API shows the newer of the two): a rewrite of the record would raise the
    # read-model counter, which every open admin page re-renders on, at every heartbeat of every agent.
    await records.update_agent(redis, keys, "a1", lambda _: AgentRecord(agent_id="a1", display_name="a1", last_seen=T0))
    before = (await redis.get(keys.agent("a1")), await redis.get(keys.readmodel_version))
    later = T0 + after

    await records.record_contact(redis, keys, "a1", later, agents.seen("a1", later))

    assert (await redis.get(keys.agent("a1")), await redis.get(keys.readmodel_version)) == before
    assert await redis.zscore(keys.agents_last_seen, "a1") == later.timestamp(), "the contact itself is recorded"


async def test_the_offline_detection_spares_an_agent_heard_after_it_read_the_last_seen_set(
    redis: aioredis.Redis, keys: Keys
) -> None:
    for agent_id in ("heard", "silent"):
        active = AgentRecord(agent_id=agent_id, display_name=agent_id, status="active", tunnel_id="t", last_seen=T0)
        await records.update_agent(redis, keys, agent_id, lambda _, r=active: r)  # type: ignore[misc]
        await redis.zadd(keys.agents_last_seen, {agent_id: T0.timestamp()})
    cutoff = (T0 + timedelta(minutes=1)).timestamp()  # both silent when the detection read the set
    heard = T0 + timedelta(minutes=2)
    await records.record_contact(redis, keys, "heard", heard, agents.seen("heard", heard))  # moves only the set

    for agent_id in ("heard", "silent"):
        await records.update_agent(redis, keys, agent_id, agents.went_silent(cutoff), silent_before=cutoff)

    statuses = {a: records.decode_agent(records.raw_bytes(await redis.get(keys.agent(a)))) for a in ("heard", "silent")}
    assert {a: r.status if r else None for a, r in statuses.items()} == {"heard": "active", "silent": "offline"}


def rule(name: str, service: str = "http://web:80") -> RuleRecord:
    return RuleRecord(key=name, hostname=name, service=service)


async def test_a_zone_result_sets_the_statuses_it_changes_and_keeps_a_rule_rewritten_meanwhile(
    redis: aioredis.Redis, keys: Keys, other_writer: redis.Redis
) -> None:
    result = JobResult(job_id="j1", job_type="sync_dns_zone", target="zone:z1", ok=True)
    fresh = rule("new.example.com")
    settled = with_result(rule("old.example.com"), result)  # already carries this result's state
    for doc in (fresh, settled):
        await redis.set(keys.rule(doc.key), records.encode(doc))
    change = result_change(result)
    assert change is not None
    refreshed = with_result(rule("old.example.com", service="http://other:81"), result)
    retries = records.TX_RETRIES.labels("rules")._value.get()

    def result_racing_a_refresh(current: Mapping[str, RuleRecord | None]) -> Mapping[str, RuleRecord | None]:
        # A refresh rewrites the rule this result leaves as it is, between the result's read and its write.
        other_writer.set(keys.rule(refreshed.key), records.encode(refreshed))
        return change(current)

    await records.update_rules(redis, keys, [fresh.key, settled.key], result_racing_a_refresh)

    new = records.decode_rule(records.raw_bytes(await redis.get(keys.rule(fresh.key))))
    assert new is not None and new.dns_state == "active", "the result set the DNS state of the rule it published"
    kept = records.decode_rule(records.raw_bytes(await redis.get(keys.rule(settled.key))))
    assert kept == refreshed, "the refresh's write stays"
    assert records.TX_RETRIES.labels("rules")._value.get() == retries, (
        "a write to a rule the result does not change made the result start over"
    )
