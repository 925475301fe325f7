"""The agent process: wires Docker watching, the event outbox, command polling, heartbeats and cloudflared together.

Start-up order matters for running without a master: first the cloudflared container is brought back from the
last-known tunnel token on disk (if one was wanted; retried in the background while the engine is unreachable),
then Docker watching starts (events are buffered), and only then does the agent try to register.

Everything that talks to the master goes through one ``MasterLink`` (``link.py``): it registers, closes its gate
when the master rejects the key and reopens it with a slow re-register, and applies the one error policy
(``linkpolicy.py``) to every call. Docker watching and cloudflared carry on whatever the master answers.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ipaddress
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from importlib import metadata
from typing import Any, TypeVar
from urllib.parse import urlsplit

import docker
import msgspec

from flareport_agent import watcher as watching
from flareport_agent.client import MasterClient, access_headers
from flareport_agent.cloudflared import MANAGED_LABEL, MANAGED_VALUE
from flareport_agent.commands import CommandExecutor
from flareport_agent.external import DETAIL, ExternalCloudflared
from flareport_agent.link import LinkTiming, MasterLink, Missed
from flareport_agent.linkpolicy import Reaction
from flareport_agent.metrics import HEARTBEATS, MASTER_CLEARTEXT
from flareport_agent.outbox import Outbox, send_loop
from flareport_agent.pollcommands import CommandPoller
from flareport_agent.state import StateStore, effective_key
from flareport_agent.swarmtunnel import tunnel_manager
from flareport_agent.swarmwatch import ServiceWatcher
from flareport_agent.tracker import Tracker
from flareport_agent.tunnel import TunnelManager, TunnelResult
from flareport_agent.tunnelcache import TunnelStateCache
from flareport_common import tracing
from flareport_common.backoff import Backoff
from flareport_common.health import bound_port, start_health_server
from flareport_common.logs import get_logger
from flareport_common.messages.events import TunnelState, TunnelStatus
from flareport_common.messages.trace import Trace
from flareport_common.protocol import AgentEvent, HeartbeatRequest, RegisterRequest, RegisterResponse
from flareport_common.settings import AgentSettings

log = get_logger("flareport.agent")
T = TypeVar("T")
CAPABILITIES = ("events", "inventory", "commands", "cloudflared")
# What the master's record of the agent shows in external-cloudflared mode (external.py).
EXTERNAL_CAPABILITIES = ("events", "inventory", "commands", "external-cloudflared")


@functools.cache  # every heartbeat carries it, and a metadata lookup walks the installed distributions
def agent_version() -> str:
    try:
        return metadata.version("flareport")
    except metadata.PackageNotFoundError:
        return "0"


def cleartext_master(url: str) -> bool:
    """True when ``url`` is plain http:// to a host that is not loopback (127.0.0.0/8, ::1, localhost): the agent
    key and the tunnel token would cross the network readable by anyone on the path."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "http":
        return False
    host = (parts.hostname or "").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a DNS name: it may resolve anywhere


def warn_if_cleartext(url: str) -> bool:
    """Log (and flag in ``flareport_agent_master_url_cleartext``) a master reached in clear text; True if so."""
    cleartext = cleartext_master(url)
    MASTER_CLEARTEXT.set(1 if cleartext else 0)
    if cleartext:
        log.warning(
            "master.cleartext_url",
            master_host=urlsplit(url).hostname,  # not the URL: it may carry credentials
            hint="FLAREPORT_MASTER_URL is plain http:// to a host that is not loopback: the agent key and the tunnel "
            "token travel in clear text, readable and replayable by anyone on the network path. Use https:// "
            "(a TLS-terminating proxy in front of the API), or a tunnel/VPN to a loopback address",
        )
    return cleartext


@dataclass(frozen=True, slots=True)
class Tuning:
    """Timings and sizes; the defaults suit production, tests shorten them."""

    max_batch: int = 200
    buffer_capacity: int = 10_000
    linger_seconds: float = 0.02
    heartbeat_seconds: float | None = None  # None: what the master says at registration
    poll_wait_seconds: float | None = None
    reregister_seconds: float = 60.0
    register_backoff_max: float = 30.0
    state_flush_seconds: float = 10.0
    health_host: str = "0.0.0.0"
    swarm_poll_seconds: float = 5.0  # how often a Swarm manager lists services and tasks (swarmwatch.py)


class Agent:
    def __init__(
        self,
        settings: AgentSettings,
        tuning: Tuning | None = None,
        docker_factory: Callable[[], docker.DockerClient] | None = None,
    ) -> None:
        self.settings = settings
        self.tuning = tuning or Tuning()
        self.store = StateStore(settings.data_dir)
        self.store.prepare()
        self.state = self.store.load()
        client = MasterClient(
            settings.master_url,
            effective_key(self.state, settings.api_key),
            headers=access_headers(settings.access_client_id, settings.access_client_secret),
        )
        client.agent_id = self.state.agent_id
        self.link = MasterLink(
            client,
            self._registration,
            registered=self._registered,
            timing=LinkTiming(
                reregister_seconds=self.tuning.reregister_seconds,
                register_backoff_max=self.tuning.register_backoff_max,
            ),
        )
        self.docker_factory = docker_factory or self._default_docker
        self.tracker = Tracker(label_prefix=settings.label_prefix, ignore_label=(MANAGED_LABEL, MANAGED_VALUE))
        self.outbox = Outbox(
            capacity=self.tuning.buffer_capacity, last_seq=self.state.last_seq, snapshot=self.tracker.inventory
        )
        self.heartbeat_seconds = self.tuning.heartbeat_seconds or 15.0
        self.poll_wait_seconds = self.tuning.poll_wait_seconds or 25.0
        self.health_port: int | None = None
        self.stopped = asyncio.Event()
        self._seq_moved = asyncio.Event()  # set when the master accepted events: ``_flush_state`` has work
        self._tasks: set[asyncio.Task[Any]] = set()
        self._tunnel_lock = asyncio.Lock()
        self.tunnel_cache = TunnelStateCache()  # what heartbeats report, read again only after a change
        self._watcher: watching.DockerWatcher | None = None
        self.executor = CommandExecutor(
            state=self.state,
            save=self.save_state,
            in_tunnel=self.in_tunnel,
            default_image=settings.cloudflared_image,
            external=settings.external_cloudflared,
            configured_key=settings.api_key,
            resync=self.resync,
            tunnel_changed=lambda: self._spawn(self._report_tunnel()),
            use_key=self.link.use_key,
            shutdown=self.stop,
        )

    def _default_docker(self) -> docker.DockerClient:
        if self.settings.docker_host:
            return docker.DockerClient(base_url=self.settings.docker_host)
        return docker.from_env()

    async def in_tunnel(self, operation: Callable[[TunnelManager], T]) -> T:
        """Run a blocking cloudflared operation in a worker thread with its own short-lived Docker client; the
        state heartbeats report is read again after it."""
        self.tunnel_cache.forget()
        try:
            return await self._tunnel_call(operation)
        finally:
            self.tunnel_cache.forget()

    async def _tunnel_call(self, operation: Callable[[TunnelManager], T]) -> T:

        def run() -> T:
            # A Swarm manager runs cloudflared as a service, any other engine as a container (swarmtunnel.py);
            # in external mode the operator runs it elsewhere (external.py).
            if self.settings.external_cloudflared:
                return operation(ExternalCloudflared())
            manager = tunnel_manager(
                self.docker_factory,
                allowed_image=self.settings.cloudflared_image,
                network=self.settings.cloudflared_network,
                metrics_port=self.settings.cloudflared_metrics_port,
            )
            try:
                return operation(manager)
            finally:
                manager.close()

        # One operation at a time: a restore from disk and a start_tunnel command must not race to create the
        # same container.
        async with self._tunnel_lock:
            return await asyncio.to_thread(run)

    def save_state(self) -> None:
        self.store.save(self.state)

    def stop(self) -> None:
        self.stopped.set()

    def resync(self) -> None:
        if self._watcher is not None:
            self._watcher.resync()

    @property
    def docker_connected(self) -> bool:
        return self._watcher is not None and self._watcher.connected

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self) -> int:
        async def ready() -> bool:
            return self.docker_connected

        warn_if_cleartext(self.settings.master_url)
        runner = await start_health_server(self.tuning.health_host, self.settings.health_port, ready)
        self.health_port = bound_port(runner)
        log.info("agent.started", health_port=self.health_port, version=agent_version())
        try:
            self._spawn(self._restore_tunnel())
            queue: asyncio.Queue[watching.WatchItem] = asyncio.Queue()
            self._watcher = watching.DockerWatcher(
                self.docker_factory, queue, asyncio.get_running_loop(), event_streams=self.settings.event_streams
            )
            self._watcher.start()
            self._spawn(self._consume(queue))
            self._spawn(self._start_talking())
            self._spawn(self._flush_state())
            self._spawn(
                ServiceWatcher(self.docker_factory, self.tracker, self.outbox, self.tuning.swarm_poll_seconds).run()
            )
            await self.stopped.wait()
        finally:
            if self._watcher is not None:
                self._watcher.stop()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._watcher is not None:
                await asyncio.to_thread(self._watcher.join)
            await self.link.close()
            await runner.cleanup()
            self.save_state()
            log.info("agent.stopped")
        return 0

    async def _restore_tunnel(self) -> None:
        """Bring cloudflared back from disk: it serves traffic whether or not the master is reachable. Retried in
        the background while the engine is unreachable (a host booting may start the agent before the engine)."""
        if self.settings.external_cloudflared:
            log.info("cloudflared.external", tunnel_id=self.state.tunnel_id, hint=DETAIL)
            return
        backoff = Backoff(initial=1.0, maximum=60.0)
        while True:
            st = self.state
            if not (st.tunnel_wanted and st.tunnel_id and st.tunnel_token):
                return  # nothing saved, or a command changed the tunnel meanwhile
            tunnel_id, token = st.tunnel_id, st.tunnel_token
            # Always the configured image: the state file is no authority on what runs here (an edited file, or an
            # image an older release took from a command). An operator's new CLOUDFLARED_IMAGE replaces it here.
            image = self.settings.cloudflared_image
            if st.tunnel_image and st.tunnel_image != image:
                log.warning("cloudflared.saved_image_replaced", saved_image=st.tunnel_image, image=image)
                st.tunnel_image = image
            try:
                result = await self.in_tunnel(_ensure(tunnel_id, token, image))
            except Exception as exc:  # engine down or refusing: keep trying, the tunnel is what serves traffic
                delay = backoff.next()
                log.error("cloudflared.restore_failed", tunnel_id=tunnel_id, error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                continue
            log.info("cloudflared.restored", action=result.action, tunnel_id=tunnel_id)
            return

    async def _consume(self, queue: asyncio.Queue[watching.WatchItem]) -> None:
        while True:
            item = await queue.get()
            if isinstance(item, watching.Snapshot):  # the watcher (re)connected: events may have been missed
                self.tunnel_cache.forget()
                inventory = self.tracker.snapshot(item.containers)
                log.info("docker.inventory", containers=len(inventory.containers))
                self._log_errors(inventory.containers)
                self.outbox.put(inventory)
            elif isinstance(item, watching.Event):
                log.debug("docker.event", action=item.raw.get("Action"), id=str(item.raw.get("id", ""))[:12])
                self.tunnel_cache.seen(item.raw)
                event = self.tracker.event(item.raw)
                if event is not None:
                    event = traced(event, item)
                    container = getattr(event, "container", None)
                    if container is not None:
                        self._log_errors((container,))
                    self.outbox.put(event)

    def _log_errors(self, containers: Any) -> None:
        for info in containers:
            for error in info.errors:
                log.warning("labels.invalid", container=info.name, label=error.label, reason=error.reason)

    def _registration(self) -> RegisterRequest:
        st = self.state
        token = st.tunnel_token if st.tunnel_wanted and st.tunnel_id else None
        return RegisterRequest(
            display_name=socket.gethostname(),
            hostname=socket.gethostname(),
            version=agent_version(),
            capabilities=EXTERNAL_CAPABILITIES if self.settings.external_cloudflared else CAPABILITIES,
            # Lets a control plane that lost its data restore this agent's enrolment (see RegisterRequest).
            tunnel_id=st.tunnel_id if token else None,
            tunnel_token_sha256=hashlib.sha256(token.encode()).hexdigest() if token else None,
        )

    def _registered(self, response: RegisterResponse, again: bool) -> None:
        if response.agent_id != self.state.agent_id:
            self.state.agent_id = response.agent_id
            self.save_state()
        self.outbox.rebase(response.last_seq, response.agent_id)
        self.heartbeat_seconds = self.tuning.heartbeat_seconds or response.heartbeat_interval_seconds
        self.poll_wait_seconds = self.tuning.poll_wait_seconds or response.poll_wait_seconds
        if again:
            # The master may have missed changes (or lost its record): what runs now, after what is buffered.
            self.outbox.put(self.tracker.inventory())

    async def _start_talking(self) -> None:
        await self.link.connect()
        self._spawn(
            send_loop(
                self.outbox,
                self.link,
                max_batch=self.tuning.max_batch,
                linger=self.tuning.linger_seconds,
                on_accepted=self._accepted,
                starting=self.tracker.starting,
            )
        )
        poller = CommandPoller(
            self.link,
            state=self.state,
            executor=self.executor,
            save=self.save_state,
            poll_wait=lambda: self.poll_wait_seconds,
        )
        self._spawn(poller.run())
        self._spawn(self._heartbeats())

    def _accepted(self, last_seq: int) -> None:
        # Kept in memory and saved by ``_flush_state`` now and then: an fsync per batch would stall the event loop
        # under a burst, and the number is only a hint (registration returns the master's authoritative one).
        if last_seq > self.state.last_seq:
            self.state.last_seq = last_seq
            self._seq_moved.set()

    async def _flush_state(self) -> None:
        """Save the accepted sequence number at most every ``state_flush_seconds``, and only after it moved: an
        idle agent has no timer here (it woke every 10 s to find nothing to save)."""
        saved = self.state.last_seq
        while True:
            await self._seq_moved.wait()
            await asyncio.sleep(self.tuning.state_flush_seconds)  # what else is accepted meanwhile goes in this save
            self._seq_moved.clear()
            if self.state.last_seq != saved:
                saved = self.state.last_seq
                await asyncio.to_thread(self.save_state)

    def _nothing_to_report_at_boot(self) -> bool:
        """A fresh agent: no tunnel of its own yet, and no operator's cloudflared whose state only heartbeats carry."""
        return not self.settings.external_cloudflared and not self.state.tunnel_id

    async def tunnel_state(self) -> TunnelState:
        tunnel_id = self.state.tunnel_id
        kept = self.tunnel_cache.current(tunnel_id)
        if kept is not None and self.docker_connected:  # connected: an event would have said it changed
            return kept
        try:
            ticket = self.tunnel_cache.begin()
            # Only the container form is kept (tunnelcache.py): its changes come as the watcher's events.
            state, container = await self._tunnel_call(lambda tm: (tm.state(tunnel_id), type(tm) is TunnelManager))
            if container and not self.settings.external_cloudflared:
                self.tunnel_cache.keep(ticket, tunnel_id, state)
            return state
        except Exception as exc:  # the engine is unreachable: report that instead of failing the heartbeat
            log.debug("cloudflared.inspect_failed", error=str(exc))
            return TunnelState(container_state="unknown", tunnel_id=self.state.tunnel_id)

    async def _report_tunnel(self) -> None:
        self.outbox.put(TunnelStatus(agent_id="", tunnel=await self.tunnel_state()))

    async def _heartbeats(self) -> None:
        await self.link.opened()
        if self._nothing_to_report_at_boot():
            # Its registration said all a first beat would (it is alive, it runs no tunnel); Docker's state and what
            # follows come with the next beat. When a fleet boots together, that is a request to the API and a
            # message to the reconciler fewer per host at the busiest moment.
            await asyncio.sleep(self.heartbeat_seconds)
        while True:
            await self.link.opened()
            request = HeartbeatRequest(
                tunnel=await self.tunnel_state(), docker_reachable=self.docker_connected, agent_version=agent_version()
            )
            response = await self.link.heartbeat(request)
            if isinstance(response, Missed):
                if response.reaction is Reaction.REVOKE:
                    continue  # the link is open again: say so at once
            else:
                HEARTBEATS.inc()
                if response.reregister:
                    log.warning("master.record_lost", hint="the master lost this agent's record; registering again")
                    await self.link.register_again()
            await asyncio.sleep(self.heartbeat_seconds)


def traced(event: AgentEvent, item: watching.Event) -> AgentEvent:
    """The event with its trace: the engine's time of it (``timeNano``, else ``time``) and when it was read."""
    if isinstance(event, TunnelStatus):
        return event
    raw = item.raw
    nano, seconds = raw.get("timeNano"), raw.get("time")
    engine_us = nano // 1000 if isinstance(nano, int) else seconds * 1_000_000 if isinstance(seconds, int) else 0
    trace = Trace(engine_us=max(engine_us, 0), agent_us=item.received_us)
    tracing.observe("engine_to_agent", trace.engine_us, trace.agent_us)
    return msgspec.structs.replace(event, trace=trace)


def _ensure(tunnel_id: str, token: str, image: str) -> Callable[[TunnelManager], TunnelResult]:
    return lambda manager: manager.ensure(tunnel_id, token, image)
