"""The agent protocol (``flareport_common.protocol``): register, events, command long-poll, ack, heartbeat.

Identity and time come from the server: the agent id is the key's binding and ``occurred_at`` is stamped
here, whatever the body says. Events (and the registration event) are admitted by ``ingest``: sequence numbers,
the agent's rate and the shared backlog are checked atomically with the XADDs, so two API replicas receiving the
same retried batch cannot both add it, and a 2xx means the reconciler will handle the event. Nothing here adds
to a stream with ``MAXLEN``: an entry is trimmed only after every consumer group handled it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import msgspec
from aiohttp import web

from flareport_api import agent_input, ingest, quotas, readstore, validation
from flareport_api.errors import ApiError, invalid, json_response, query_float, read_body
from flareport_api.metrics import HEARTBEATS_DROPPED
from flareport_api.quotas import refuse as refuse_quota
from flareport_api.state import QueryParam, Route, context
from flareport_common import readversion, tracing
from flareport_common.keys import GROUP_AGENT
from flareport_common.messages.base import utcnow
from flareport_common.messages.commands import CommandMessage, RotateKey
from flareport_common.messages.events import AgentRegistered, CommandAck, Heartbeat, TunnelStatus
from flareport_common.messages.trace import Trace
from flareport_common.parcels import secret_ref
from flareport_common.protocol import (
    AgentEvent,
    CommandAckRequest,
    CommandAckResponse,
    CommandBatch,
    EventBatch,
    EventBatchResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    RegisterRequest,
    RegisterResponse,
)
from flareport_common.readmodel import CommandRecord
from flareport_common.streams.codec import FIELD, message_json

MAX_EVENTS_PER_BATCH = 1000
MAX_SEQ = 2**53  # Lua numbers are doubles: larger integers would compare wrongly
HEARTBEAT_INTERVAL_S = 15.0
HEARTBEAT_HISTORY = 20
# A bound agent whose record the reconciler still lacks after this long is told to register again.
REREGISTER_AFTER = timedelta(seconds=120)

_encoder = msgspec.json.Encoder()
_command_decoder = msgspec.json.Decoder(CommandMessage)


def _agent_id(request: web.Request) -> str:
    return validation.path_id(request.match_info["agent_id"], "agent_id")


async def _last_seq(request: web.Request, agent_id: str) -> int:
    ctx = context(request)
    raw = await ctx.redis.get(ctx.keys.agent_last_seq(agent_id))
    return max(int(raw), 0) if raw is not None else 0


async def register(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    stored = await ctx.auth.agent(request)
    body = await read_body(request, RegisterRequest)
    display_name = validation.text(body.display_name, "display_name")
    agent_input.printable(body.hostname, "hostname", 253)
    agent_input.printable(body.version, "version", 100)
    if len(body.capabilities) > 64:
        raise invalid("capabilities", "at most 64 capabilities of at most 64 characters each")
    for index, capability in enumerate(body.capabilities):
        agent_input.printable(capability, f"capabilities[{index}]", 64, empty=False)
    tunnel_id, token_sha256 = _tunnel_claim(body)
    # Derived from the key id (not random), so a key restored after a loss of data is bound to the same agent.
    wanted_id = stored.agent_id or ctx.store.minter.agent_id_for(stored.key_id)
    agent_id = await ctx.store.bind(stored, wanted_id, display_name)
    event = AgentRegistered(
        agent_id=agent_id,
        display_name=display_name,
        hostname=body.hostname,
        version=body.version,
        capabilities=body.capabilities,
        tunnel_id=tunnel_id,
        tunnel_token_sha256=token_sha256,
    )
    # Admitted like any event: a registration loop pays the agent's rate and waits out a deep backlog (429).
    await ingest.accept(ctx, agent_id, [(None, _encoder.encode(event))])
    raw_record, raw_seq = await ctx.redis.mget([ctx.keys.agent(agent_id), ctx.keys.agent_last_seq(agent_id)])
    record = readstore.agent_from(raw_record, ctx.keys, agent_id)
    return json_response(
        RegisterResponse(
            agent_id=agent_id,
            status=record.status if record is not None else "pending",
            last_seq=max(int(raw_seq), 0) if raw_seq is not None else 0,
            heartbeat_interval_seconds=HEARTBEAT_INTERVAL_S,
            poll_wait_seconds=min(25.0, ctx.settings.max_wait_seconds),
        )
    )


def _tunnel_claim(body: RegisterRequest) -> tuple[str | None, str | None]:
    """The agent's saved tunnel (id, token hash): both or neither, each well formed."""
    if (body.tunnel_id is None) != (body.tunnel_token_sha256 is None):
        field = "tunnel_token_sha256" if body.tunnel_token_sha256 is None else "tunnel_id"
        raise invalid(field, "tunnel_id and tunnel_token_sha256 come together")
    if body.tunnel_id is not None:
        validation.path_id(body.tunnel_id, "tunnel_id")
    digest = body.tunnel_token_sha256
    if digest is not None and (len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest)):
        raise invalid("tunnel_token_sha256", "must be 64 lowercase hexadecimal characters (a SHA-256)")
    return body.tunnel_id, digest


async def events(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    agent_id = _agent_id(request)
    await ctx.auth.agent_for(request, agent_id)
    # Only an authenticated agent gets the larger limit its inventory snapshots need.
    request = request.clone(client_max_size=ctx.settings.max_events_body_bytes)
    batch = await read_body(request, EventBatch)
    if len(batch.events) > MAX_EVENTS_PER_BATCH:
        raise invalid("events", f"at most {MAX_EVENTS_PER_BATCH} events per batch")
    try:  # hostile input: every field checked and bounded (422), size quotas refused and recorded (413)
        checked_events = agent_input.checked(batch.events, ctx.settings.quotas)
    except agent_input.OverQuota as over:
        raise await quotas.refuse(ctx.redis, ctx.keys, agent_id, over.limit, over.message, status=413) from None
    now = utcnow()
    now_us = tracing.now_us()
    stamped_events: list[tuple[int | None, bytes]] = []
    traces: list[Trace] = []
    for index, event in enumerate(checked_events):
        seq = getattr(event, "seq", None)
        if seq is not None and not 0 <= seq <= MAX_SEQ:
            raise invalid(f"events[{index}].seq", f"seq must be between 0 and {MAX_SEQ}")
        if isinstance(event, TunnelStatus):
            stamped: AgentEvent = msgspec.structs.replace(event, agent_id=agent_id, occurred_at=now)
        else:
            # The agent's times are bounded here and serve the hop histograms only (flareport_common.tracing).
            trace = tracing.admitted(event.trace, now=now_us, new_id=event.id)
            traces.append(trace)
            # The batch's coalescing hint on every event it carries, whatever the agent put on the events.
            stamped = msgspec.structs.replace(
                event, agent_id=agent_id, occurred_at=now, trace=trace, starting=batch.starting
            )
        stamped_events.append((seq, _encoder.encode(stamped)))
    if not batch.events:
        return json_response(EventBatchResponse(accepted=0, last_seq=await _last_seq(request, agent_id)))
    # Seq check, the agent's rate and the shared backlog, atomically; over a limit: 429 + Retry-After.
    done = await ingest.accept(ctx, agent_id, stamped_events)
    # Once per request, for the event that waited longest: per-event observations would cost the ingest rate.
    tracing.observe("agent_to_api", min((t.agent_us for t in traces if t.agent_us), default=0), now_us)
    return json_response(
        EventBatchResponse(accepted=done.accepted, duplicates=done.duplicates, last_seq=max(done.last_seq, 0))
    )


async def commands(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    agent_id = _agent_id(request)
    stored = await ctx.auth.agent_for(request, agent_id)
    wait = query_float(request, "wait", default=0.0, minimum=0.0, maximum=ctx.settings.max_wait_seconds)
    limit = ctx.settings.quotas.longpolls
    slot, lapse_s = await ctx.hub.acquire(agent_id, wait, limit)
    if slot is None:
        message = f"at most {limit} command long-polls at once per agent; retry when one has answered"
        # The other poll may end any moment (its client may have gone and is noticed within seconds).
        raise await refuse_quota(ctx.redis, ctx.keys, agent_id, "longpolls", message, retry_after=min(lapse_s, 5.0))
    try:
        if stored.redeliver:
            await ctx.store.clear_redeliver(stored)
        found = await ctx.hub.poll(
            agent_id,
            wait,
            from_start=stored.redeliver,
            alive=lambda: request.transport is not None,
            valid=lambda: ctx.auth.still_valid(request, stored, agent_id),
        )
        # The key may have been revoked, or its agent removed, while the poll waited: nothing (no secret above
        # all) goes to a key that is not valid now. What was read stays pending and goes to a valid key later.
        await ctx.auth.recheck(request, stored, agent_id)
    finally:
        await ctx.hub.release(agent_id, slot)
    return json_response(CommandBatch(commands=tuple(found)))


async def ack(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    agent_id = _agent_id(request)
    await ctx.auth.agent_for(request, agent_id)
    command_id = validation.entry_id(request.match_info["command_id"], "command_id")
    body = await read_body(request, CommandAckRequest)
    if body.error is not None and len(body.error) > 4000:
        raise invalid("error", "error must be at most 4000 characters")
    stream = ctx.keys.agent_commands(agent_id)
    # The command and whether it is still pending, in one round trip: neither read depends on the other.
    reads = ctx.redis.pipeline(transaction=False)
    reads.xrange(stream, command_id, command_id, count=1)
    reads.xpending_range(stream, GROUP_AGENT, min=command_id, max=command_id, count=1)
    entries, pending = await reads.execute(raise_on_error=False)
    if isinstance(entries, Exception):
        raise entries
    if not entries:  # no such command: the stream (and its group) may not even exist, so the second read failed
        raise ApiError(404, "unknown_command", f"no command {command_id} for this agent")
    if isinstance(pending, Exception):
        raise pending
    command = _decode_command(entries[0][1])
    ref = None if command is None else secret_ref(command)
    if not pending:
        if ref is not None:  # its secret is deleted at the ack; again here in case that ack's request failed after
            await ctx.redis.delete(ctx.keys.agent_secret(agent_id, ref))
        return json_response(CommandAckResponse(acked=False))  # acknowledged before: nothing to do again
    now = utcnow()
    kind = "unknown" if command is None else str(type(command).__struct_config__.tag)
    record = CommandRecord(
        command_id=command_id,
        command_type=kind,
        issued_at=None if command is None else command.occurred_at,
        acked_at=now,
        ok=body.ok,
        error=body.error,
        result=body.result,
    )
    event = CommandAck(
        agent_id=agent_id,
        command_id=command_id,
        command_type=kind,
        ok=body.ok,
        error=body.error,
        result=body.result,
        occurred_at=now,
        correlation_id="" if command is None else command.correlation_id,
    )
    history = ctx.keys.agent_command_history(agent_id)
    pipe = ctx.redis.pipeline(transaction=True)
    pipe.xack(stream, GROUP_AGENT, command_id)
    if ref is not None:  # delivered once: the tunnel token or rolled key no longer exists in Redis
        pipe.delete(ctx.keys.agent_secret(agent_id, ref))
    pipe.lpush(history, _encoder.encode(record))
    pipe.ltrim(history, 0, readstore.HISTORY_LIMIT - 1)
    # Never refused nor trimmed: an ack answers a command the reconciler sent, so their number is bounded by the
    # commands, and losing one would leave the command pending forever.
    pipe.xadd(ctx.keys.events, {FIELD: _encoder.encode(event)})
    readversion.bump(pipe, ctx.keys)  # the command history is on the agent's page
    acked = (await pipe.execute())[0] == 1
    if acked and body.ok and isinstance(command, RotateKey):
        # The agent stored its new key: every other key of this agent stops working from now on.
        await ctx.store.revoke_agent_keys(agent_id, keep=command.key_id)
    return json_response(CommandAckResponse(acked=acked))


def _decode_command(fields: Any) -> CommandMessage | None:
    raw = message_json(fields)
    try:
        return None if raw is None else _command_decoder.decode(raw)
    except msgspec.DecodeError:
        return None


async def heartbeat(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    agent_id = _agent_id(request)
    stored = await ctx.auth.agent_for(request, agent_id)
    body = await read_body(request, HeartbeatRequest)
    agent_input.tunnel_state(body.tunnel, "tunnel")
    agent_input.printable(body.agent_version, "agent_version", 1000)
    now = utcnow()
    beat = Heartbeat(
        agent_id=agent_id,
        tunnel=body.tunnel,
        docker_reachable=body.docker_reachable,
        agent_version=body.agent_version[:100],
        occurred_at=now,
    )
    history = ctx.keys.agent_heartbeats(agent_id)
    summary = {"at": now, "tunnel": body.tunnel, "docker_reachable": body.docker_reachable}
    # A heartbeat goes to the reconciler only within the agent's rate and below the backlog limit; otherwise it is
    # dropped (the next one, 15 s later, says the same), never answered 429: liveness must not fail under load.
    if isinstance(await ingest.admit(ctx, agent_id, [(None, _encoder.encode(beat))]), ingest.Refused):
        HEARTBEATS_DROPPED.inc()
    pipe = ctx.redis.pipeline(transaction=False)
    # A short history for the admin's agent page (the reconciler keeps only last_seen), and the record read in
    # the same round trip.
    pipe.lpush(history, _encoder.encode(summary))
    pipe.ltrim(history, 0, HEARTBEAT_HISTORY - 1)
    pipe.get(ctx.keys.agent(agent_id))
    record = readstore.agent_from((await pipe.execute())[-1], ctx.keys, agent_id)
    waited = stored.registered_at is not None and now - stored.registered_at > REREGISTER_AFTER
    # A restored key means the reconciler lost the agent too (a record it made since, from a heartbeat or an ack,
    # lacks the enrolment and the inventory): register again now, whatever the read model shows.
    lost = (record is None and waited) or stored.must_register
    return json_response(
        HeartbeatResponse(status=record.status if record else "pending", server_time=now, reregister=lost)
    )


_AGENT = (401, 403, 413, 422, 429)
ROUTES = [
    Route("POST", "/api/v1/agents/register", register, "Register this agent (binds the key on first use)",
          "agent protocol", "agent", RegisterRequest, RegisterResponse, errors=(400, *_AGENT)),
    Route("POST", "/api/v1/agents/{agent_id}/events", events, "Report a batch of container events",
          "agent protocol", "agent", EventBatch, EventBatchResponse, errors=(400, *_AGENT)),
    Route("GET", "/api/v1/agents/{agent_id}/commands", commands, "Long-poll this agent's commands",
          "agent protocol", "agent", None, CommandBatch, errors=_AGENT,
          query=(QueryParam("wait", {"type": "number", "minimum": 0, "maximum": 60},
                            "seconds to wait for a command (0: answer at once)"),)),
    Route("POST", "/api/v1/agents/{agent_id}/commands/{command_id}/ack", ack, "Acknowledge one command",
          "agent protocol", "agent", CommandAckRequest, CommandAckResponse, errors=(400, 404, *_AGENT)),
    Route("POST", "/api/v1/agents/{agent_id}/heartbeat", heartbeat, "Report liveness and tunnel state",
          "agent protocol", "agent", HeartbeatRequest, HeartbeatResponse, errors=(400, *_AGENT)),
]  # fmt: skip
