"""The claims, planning, rule and grace-deletion scripts (``flareport_reconciler.scripts``), each on its own against
real Redis: their answers and the keys they leave."""

from __future__ import annotations

import redis.asyncio as aioredis

from flareport_common.keys import Keys
from flareport_reconciler import scripts
from flareport_reconciler.scripts import DeleteDue, DocumentWrite, DueDeletion, NewClaim, RemovedClaim, Written

H = "app.example.com"


async def test_a_mark_is_the_time_unless_the_hostname_has_one_as_new_then_it_moves_one_up(
    redis: aioredis.Redis, keys: Keys
) -> None:
    names = ("new", "old", "same", "ahead")
    await redis.zadd(keys.dirty_hostnames, {"old": 500, "same": 1_000, "ahead": 1_500})
    pipe = redis.pipeline(transaction=True)
    scripts.mark_dirty(pipe, keys, 1_000, names)
    await pipe.execute()

    marks = {name: await redis.zscore(keys.dirty_hostnames, name) for name in names}
    assert marks == {"new": 1_000, "old": 1_000, "same": 1_001, "ahead": 1_501}, (
        "a mark must always move, so a refresh that read the old one sees the change"
    )


async def _write(
    redis: aioredis.Redis,
    keys: Keys,
    removed: list[RemovedClaim],
    added: list[NewClaim],
    **sets: str | None,
) -> None:
    pipe = redis.pipeline(transaction=True)
    scripts.write_claims(pipe, keys, removed, added, **sets)
    await pipe.execute()


def _new(keys: Keys, claim_id: str, owner: str, at_ms: int, **extra: object) -> NewClaim:
    fields: dict[str, object] = {
        "hostname": H,
        "claim_id": claim_id,
        "pending_member": f"{H}\x1f{claim_id}",
        "claim_json": b'{"source":"x"}',
        "delete_at": None,
        "owner": owner,
        "claimed_at_ms": at_ms,
        "zone_hostnames": keys.target_hostnames("zone:example.com"),
    }
    fields.update(extra)
    return NewClaim(**fields)  # type: ignore[arg-type]


async def test_a_new_claim_is_stored_with_its_time_and_owner_and_indexed(redis: aioredis.Redis, keys: Keys) -> None:
    agent_set, tunnel_set = keys.agent_hostnames("a1"), keys.target_hostnames("tunnel:t1")
    claim = _new(keys, "agent:a1:c1", "agent:a1", 1_000, delete_at=99.5)
    await _write(redis, keys, [], [claim], agent_hostnames=agent_set, tunnel_hostnames=tunnel_set)

    assert await redis.hget(keys.hostname_claims(H), "agent:a1:c1") == b'1000|agent:a1|{"source":"x"}'
    assert await redis.smembers(keys.target_hostnames("zone:example.com")) == {H.encode()}
    assert await redis.smembers(agent_set) == {H.encode()}
    assert await redis.smembers(tunnel_set) == {H.encode()}
    assert await redis.zscore(keys.pending_deletions, claim.pending_member) == 99.5


async def test_without_an_agent_or_tunnel_their_sets_are_left_alone(redis: aioredis.Redis, keys: Keys) -> None:
    await _write(redis, keys, [], [_new(keys, "manual:r1", "manual:r1", 1_000)])

    assert await redis.hget(keys.hostname_claims(H), "manual:r1") == b'1000|manual:r1|{"source":"x"}'
    assert await redis.zcard(keys.pending_deletions) == 0, "a claim with no grace period is not pending deletion"


async def test_an_owner_keeps_its_earliest_time_whatever_the_json_says(redis: aioredis.Redis, keys: Keys) -> None:
    claims = keys.hostname_claims(H)
    await redis.hset(claims, "agent:a1:old", b"500|agent:a1|{}")  # the owner's container before a recreation
    await redis.hset(claims, "agent:b2:c9", b"100|agent:b2|{}")  # another owner, earlier: not the owner's time
    await redis.hset(claims, "agent:zz:legacy", b'{"claimed_at": 1}')  # a value from before prefixes: no time
    forged = b'{"claimed_at": 0, "source": "1|agent:a1|"}'
    await _write(redis, keys, [], [_new(keys, "agent:a1:new", "agent:a1", 2_000, claim_json=forged)])

    assert await redis.hget(claims, "agent:a1:new") == b"500|agent:a1|" + forged


async def test_a_rewritten_claim_keeps_its_own_earlier_time_and_loses_its_pending_deletion(
    redis: aioredis.Redis, keys: Keys
) -> None:
    first = _new(keys, "agent:a1:c1", "agent:a1", 1_000, delete_at=50.0)
    await _write(redis, keys, [], [first])
    await _write(redis, keys, [], [_new(keys, "agent:a1:c1", "agent:a1", 3_000)])

    assert await redis.hget(keys.hostname_claims(H), "agent:a1:c1") == b'1000|agent:a1|{"source":"x"}'
    assert await redis.zscore(keys.pending_deletions, first.pending_member) is None


async def test_a_removed_claim_leaves_its_hash_and_the_pending_deletions(redis: aioredis.Redis, keys: Keys) -> None:
    kept = _new(keys, "agent:a1:c1", "agent:a1", 1_000)
    gone = _new(keys, "agent:a1:c2", "agent:a1", 1_000, delete_at=50.0)
    await _write(redis, keys, [], [kept, gone])
    await _write(redis, keys, [RemovedClaim(H, gone.claim_id, gone.pending_member)], [])

    assert await redis.hkeys(keys.hostname_claims(H)) == [b"agent:a1:c1"]
    assert await redis.zcard(keys.pending_deletions) == 0


async def test_the_inventory_read_gives_values_in_order_then_the_agents_counts(
    redis: aioredis.Redis, keys: Keys
) -> None:
    await redis.sadd(keys.agent_containers("a1"), "c1", "c2", "c3")
    await redis.sadd(keys.agent_hostnames("a1"), H)
    await redis.set(keys.agent_container("a1", "c1"), b"entry-1")
    await redis.set(keys.agent("a1"), b"record")
    value_keys = [keys.agent_container("a1", "c1"), keys.agent_container("a1", "missing"), keys.agent("a1")]

    read = await scripts.read_inventory(redis, keys.agent_containers("a1"), keys.agent_hostnames("a1"), value_keys)

    assert read == scripts.InventoryRead([b"entry-1", None, b"record"], containers=3, hostnames=1)


async def test_claims_are_read_per_hostname_in_order(redis: aioredis.Redis, keys: Keys) -> None:
    await redis.hset(keys.hostname_claims("b.example.com"), "manual:r1", b"1|manual:r1|{}")

    replies = await scripts.read_claims_hashes(redis, keys, ["b.example.com", "none.example.com"])

    assert replies == [[b"manual:r1", b"1|manual:r1|{}"], []]


async def test_only_hostnames_still_without_claims_leave_the_index_sets(redis: aioredis.Redis, keys: Keys) -> None:
    zone, tunnel = keys.target_hostnames("zone:example.com"), keys.target_hostnames("tunnel:t1")
    for index in (zone, tunnel):
        await redis.sadd(index, "gone.example.com", "back.example.com", "other.example.com")
    # Claimed again after the planner read it as unclaimed: it stays.
    await redis.hset(keys.hostname_claims("back.example.com"), "manual:r1", b"1|manual:r1|{}")

    await scripts.forget_unclaimed(redis, keys, [zone, tunnel], ["gone.example.com", "back.example.com"])

    for index in (zone, tunnel):
        assert await redis.smembers(index) == {b"back.example.com", b"other.example.com"}


async def test_a_due_claim_is_deleted_once_and_its_hostname_marked(redis: aioredis.Redis, keys: Keys) -> None:
    member = f"{H}\x1fagent:a1:c1"
    await redis.hset(keys.hostname_claims(H), "agent:a1:c1", b"1|agent:a1|{}")
    await redis.zadd(keys.pending_deletions, {member: 100.0})
    delete_due = DeleteDue(redis)

    async def at(now: float) -> DueDeletion:
        return await delete_due(keys, hostname=H, claim_id="agent:a1:c1", pending_member=member, now=now, mark_ms=7_000)

    assert await at(99.0) == DueDeletion.SKIPPED
    assert await redis.zscore(keys.pending_deletions, member) == 100.0, "a claim not yet due stays pending"
    assert await at(100.0) == DueDeletion.DELETED
    assert await redis.exists(keys.hostname_claims(H)) == 0
    assert await redis.zscore(keys.dirty_hostnames, H) == 7_000
    assert await at(101.0) == DueDeletion.SKIPPED, "a claim is deleted once only"


async def test_a_due_entry_whose_claim_is_gone_is_dropped_without_a_mark(redis: aioredis.Redis, keys: Keys) -> None:
    member = f"{H}\x1fagent:a1:c1"
    await redis.zadd(keys.pending_deletions, {member: 100.0})

    answer = await DeleteDue(redis)(keys, hostname=H, claim_id="agent:a1:c1", pending_member=member, now=200, mark_ms=1)

    assert answer == DueDeletion.SKIPPED
    assert await redis.zcard(keys.pending_deletions) == 0
    assert await redis.zcard(keys.dirty_hostnames) == 0


async def test_rule_documents_are_written_only_if_all_are_as_read(redis: aioredis.Redis, keys: Keys) -> None:
    await redis.set(keys.rule("a"), b"doc-a")
    await redis.set(keys.rule("b"), b"doc-b")
    await redis.sadd(keys.rules_index, "a", "b")
    stale = [DocumentWrite("a", b"doc-a", b"new-a"), DocumentWrite("b", b"other", b"-")]

    assert await scripts.write_rules(redis, keys, stale, seed=40) == Written.CHANGED
    assert (await redis.get(keys.rule("a")), await redis.get(keys.readmodel_version)) == (b"doc-a", None)

    fresh = [DocumentWrite("a", b"doc-a", b"new-a"), DocumentWrite("b", b"doc-b", b"-"), DocumentWrite("c", b"", b"")]
    assert await scripts.write_rules(redis, keys, fresh, seed=40) == Written.WRITTEN
    assert await redis.get(keys.rule("a")) == b"new-a"
    assert await redis.exists(keys.rule("b"), keys.rule("c")) == 0
    assert await redis.smembers(keys.rules_index) == {b"a"}
    assert await redis.get(keys.readmodel_version) == b"41", "the counter starts from the seed and rises"


async def test_rule_documents_left_as_they_are_do_not_raise_the_counter(redis: aioredis.Redis, keys: Keys) -> None:
    await redis.set(keys.readmodel_version, 5)

    assert await scripts.write_rules(redis, keys, [DocumentWrite("a", b"", b"")], seed=40) == Written.WRITTEN
    assert await redis.get(keys.readmodel_version) == b"5"
