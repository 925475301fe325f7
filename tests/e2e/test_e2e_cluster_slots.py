"""Redis Cluster readiness: every Lua script and MULTI/EXEC transaction the stack runs keeps its keys in one hash
slot, except the ones allowed below, each with the reason it cannot be today (docs/operations.md, "Redis Cluster").

The whole stack works on one redis-server while ``fptest.slotcheck`` watches it with MONITOR: an agent is enrolled,
publishes containers (one behind Access), one is stopped and deleted after its grace period, an admin creates
and revokes a key, adds a manual rule and asks for a full reconcile with verification. Every script and
transaction seen is checked as Redis Cluster would check it (CRC16 slots, hash tags). A new cross-slot script or
transaction fails this test; so does an allowed entry nothing matches any more (then it goes), and a script the
flow does not run that declares more than one key.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from importlib import resources

import pytest
import redis

from flareport_common import lua
from fptest.e2e_stack import E2EStack
from fptest.slotcheck import UNKNOWN, SlotRecorder, Unit

from .conftest import StackFactory, enrol_first_agent

pytestmark = pytest.mark.timeout(300)

PACKAGES = ("flareport_common", "flareport_api", "flareport_reconciler", "flareport_dns_worker")

# Cross-slot today, and why. The key layout stays as it is (existing deployments' data must survive an upgrade), so
# these are listed rather than fixed; docs/operations.md ("Redis Cluster") says what a Cluster layout would change.
# Three reasons recur: GLOBAL (one stream, index or counter for all entities: the events, intents and cf-jobs
# streams, the agents/rules/targets/apikeys indexes, readmodel-version that every read-model write raises in the
# same transaction for the web UI), MANY (one key per hostname, several hostnames in one call: a refresh or a
# deletion must see and change all of a target's hostnames at once) and UNTAGGED (global keys that could share
# a hash tag, but renaming them would orphan existing data).
GLOBAL = "GLOBAL: an entity's keys and a stream/index/counter shared by all entities change together"
MANY = "MANY: keys of several hostnames (claims:<h>, hostname:<h>, rule:<h>) and the sets that index them"
ALLOWED_SCRIPTS: dict[str, str] = {
    "accept_events": GLOBAL + " (the agent's last-seq and rate bucket share {agent:*}; the events stream is shared)",
    "take_token": "UNTAGGED: cf:rate-calls, cf:rate-bucket, cf:pause-until, cf:rate-recent, cf:rate-standing and"
    " cf:rate-serial (the rate limit every dns-worker shares)",
    "end_call": "UNTAGGED: cf:rate-recent, cf:rate-standing and cf:rate-serial (the rate limit every dns-worker"
    " shares)",
    "target_commit": GLOBAL + " (a target's state, the targets index, targets:waiting and the cf-jobs stream)",
    "target_begin": GLOBAL + " (a target's state and targets:waiting, when a held plan's hold ends or is extended)",
    "target_mark": GLOBAL + " (a target's state and targets:waiting, the targets held for their window)",
    "target_result": GLOBAL + " (a target's state and targets:waiting, the targets held for their window)",
    "write_rules": MANY + ", the rules index and readmodel-version",
    "write_agent": GLOBAL + " (an agent's record, the agents index and readmodel-version)",
    "write_refresh": MANY + ", dirty-hostnames and readmodel-version",
    "read_hostnames": MANY + " and dirty-hostnames (read only, one consistent view)",
    "finish_refresh": MANY + " and dirty-hostnames",
    "read_claims_hashes": MANY + " (read only, one consistent view)",
    "forget_unclaimed": MANY + " and the target's hostname set",
    "delete_due": MANY + ", pending-deletions and dirty-hostnames (a deletion exactly once)",
}
# Transactions by the largest set of key shapes they touch (a run may touch fewer: a snapshot key is optional).
ALLOWED_TRANSACTIONS: dict[str, tuple[frozenset[str], str]] = {
    "key created": (
        frozenset({"apikey:*", "apikeys", "readmodel-version", "recovery:data-epoch", "{agent:*}:api-keys"}),
        GLOBAL + " (the key, the key index, the data-epoch marker of key recovery)",
    ),
    "key record changed": (frozenset({"apikey:*", "readmodel-version", "{agent:*}:api-keys"}), GLOBAL),
    "manual rule": (frozenset({"api:manual-rules", "readmodel-version", "stream:intents"}), GLOBAL),
    "access facts": (frozenset({"access-facts", "stream:intents"}), GLOBAL + " (the facts and the intent they cause)"),
    "command delivered": (
        frozenset({
            "readmodel-version", "stream:events", "{agent:*}:command-history", "{agent:*}:commands",
            "{agent:*}:secret:*",
        }),
        GLOBAL + " (the agent's keys share {agent:*}; its ack goes to the events stream)",
    ),
    "claims written": (
        frozenset({
            "claims:*", "dirty-hostnames", "hostname:*", "pending-deletions", "{agent:*}:container:*",
            "{agent:*}:containers", "{agent:*}:hostnames", "{agent:*}:snapshot", "{target:*}:hostnames",
            "reconciler:manual-claims", "rule:*", "access-groups", "access-facts",
        }),
        MANY + ", the agent's inventory and the targets' hostname sets, in one WATCHed transaction; it also reads "
        "the hostnames' rule documents and the Access catalog for the refresh that follows (refresh.queue_prefetch)",
    ),
    "tunnel observed": (
        frozenset({"cf:created-tunnels", "{target:*}:observed"}),
        GLOBAL + " (what the dns-worker created, kept for decommissioning)",
    ),
}  # fmt: skip


_USES = re.compile(r"^--\s*uses:\s*(.+)$", re.MULTILINE)
_KEYS = re.compile(r"^-- KEYS:(?P<first>.*)\n(?P<more>(?:--\s{3,}.*\n)*)", re.MULTILINE)


def _scripts() -> dict[str, str]:
    """Every script file of every package, fragments included, by name."""
    found: dict[str, str] = {}
    for package in PACKAGES:
        folder = resources.files(package).joinpath("lua")
        if not folder.is_dir():
            continue
        for item in folder.iterdir():
            if item.name.endswith(".lua"):
                found[item.name.removesuffix(".lua")] = lua.load(package, item.name.removesuffix(".lua")).source
    return found


@pytest.fixture(scope="module")
def recorded(stack_factory: StackFactory) -> Iterator[tuple[E2EStack, list[Unit]]]:
    stack = stack_factory(GRACE_PERIOD_SECONDS="2")
    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    recorder = SlotRecorder(client, "fp:", _scripts()).start()
    try:
        _work(stack)
    finally:
        recorder.stop()
    yield stack, recorder.units()
    client.close()


def _work(stack: E2EStack) -> None:
    enrolled = enrol_first_agent(stack, "slots")
    host = enrolled.host
    host.labelled("plain", "plain.example.test", stack.image)
    host.labelled("guarded", "guarded.example.test", stack.image, access__policy="bypass")
    gone = host.labelled("gone", "gone.example.test", stack.image)
    stack.wait_published(
        enrolled.tunnel_id,
        {f"{n}.example.test": f"http://{n}:80" for n in ("plain", "guarded", "gone")},
    )
    gone.stop(timeout=1)
    wanted = {f"{n}.example.test": f"http://{n}:80" for n in ("plain", "guarded")}
    stack.wait_published(enrolled.tunnel_id, wanted)
    created = stack.admin("POST", "/api/v1/keys", {"label": "slots"})
    stack.admin("POST", f"/api/v1/keys/{created['info']['key_id']}/revoke")
    stack.admin(
        "POST",
        "/api/v1/manual-rules",
        {"rule": {"hostname": "manual.example.test", "service": "http://manual:80"}, "tunnel_id": enrolled.tunnel_id},
    )
    stack.admin("POST", "/api/v1/reconcile", {"scope": "all", "verify": True})
    stack.wait_published(enrolled.tunnel_id, {**wanted, "manual.example.test": "http://manual:80"})
    stack.wait_idle()


def _allowed(unit: Unit) -> bool:
    if unit.kind == "script":
        return unit.name in ALLOWED_SCRIPTS
    return any(unit.shapes("fp:") <= shapes for shapes, _ in ALLOWED_TRANSACTIONS.values())


def test_every_script_and_transaction_is_single_slot_or_allowed(recorded: tuple[E2EStack, list[Unit]]) -> None:
    _, units = recorded
    assert any(u.kind == "script" for u in units) and any(u.kind == "transaction" for u in units)
    unknown = [u.commands[0][1][:80] for u in units if UNKNOWN in u.scripts]
    assert not unknown, f"scripts not loaded from a .lua file (cannot be named in the allow-list): {unknown}"
    refused = sorted({f"{u.kind} {u.name}" for u in units if len(u.slots) > 1 and not _allowed(u)})
    assert not refused, f"cross-slot scripts or transactions that Redis Cluster would refuse (CROSSSLOT): {refused}"


def test_every_allowed_entry_is_still_run(recorded: tuple[E2EStack, list[Unit]]) -> None:
    """An entry for a script or transaction that no longer exists would hide a new one that takes its shape."""
    _, units = recorded
    scripts = {u.name for u in units if u.kind == "script"}
    assert not set(ALLOWED_SCRIPTS) - scripts, f"allowed scripts never run: {set(ALLOWED_SCRIPTS) - scripts}"
    seen = [u.shapes("fp:") for u in units if u.kind == "transaction" and len(u.slots) > 1]
    unused = [label for label, (shapes, _) in ALLOWED_TRANSACTIONS.items() if not any(s <= shapes for s in seen)]
    assert not unused, f"allowed transactions never run cross-slot: {unused}"


def test_scripts_this_flow_does_not_run_declare_one_key(recorded: tuple[E2EStack, list[Unit]]) -> None:
    """What the flow above does not reach (the web UI's login brake, a lease renewal, Cloudflare's 429 pause) is
    checked from the script's header instead: one declared key, not a list of them, is one slot."""
    _, units = recorded
    sources = _scripts()
    fragments = {
        name.strip() for source in sources.values() for line in _USES.findall(source) for name in line.split(",")
    }
    run = set().union(*(u.scripts for u in units))
    for name in sorted(set(sources) - fragments - run):
        header = _KEYS.search(sources[name])
        assert header is not None, f"{name}.lua has no KEYS header"
        declared = [header["first"], *header["more"].splitlines()]
        assert len(declared) == 1 and "..." not in declared[0], (
            f"{name}.lua declares several keys and the flow does not run it: run it above, or allow it with a reason"
        )
