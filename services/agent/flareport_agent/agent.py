"""The agent process: wires Docker watching, the event outbox, command polling, heartbeats and cloudflared together.

Start-up order matters for running without a master: first the cloudflared container is brought back from the
last-known tunnel token on disk (if one was wanted; retried in the background while the engine is unreachable),
then Docker watching starts (events are buffered), and only then does the agent try to register.

Everything that talks to the master waits on one gate, ``_link``: it opens when registration succeeds and closes
when the master rejects the key (401/403). While it is closed the agent makes no calls except a slow re-register
attempt, and says so once in the log; Docker watching and cloudflared carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from importlib import metadata
from typing import Any, TypeVar
from urllib.parse import urlsplit

import docker

from flareport_agent import watcher as watching
from flareport_agent.client import KeyRejected, MasterClient, MasterUnavailable, RequestRejected
from flareport_agent.cloudflared import MANAGED_LABEL, MANAGED_VALUE
from flareport_agent.commands import CommandExecutor
from flareport_agent.metrics import HEARTBEATS, MASTER_CLEARTEXT, MASTER_ERRORS
from flareport_agent.outbox import Outbox, send_loop
from flareport_agent.pollcommands import CommandPoller
from flareport_agent.state import StateStore, effective_key
from flareport_agent.tracker import Tracker
from flareport_agent.tunnel import TunnelManager, TunnelResult
from flareport_common.backoff import Backoff
from flareport_common.health import bound_port, start_health_server
from flareport_common.logs import get_logger
from flareport_common.messages.events import TunnelState, TunnelStatus
from flareport_common.protocol import HeartbeatRequest, RegisterRequest
from flareport_common.settings import AgentSettings

log = get_logger("flareport.agent")
T = TypeVar("T")
CAPABILITIES = ("events", "inventory", "commands", "cloudflared")


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
            "FLAREPORT_MASTER_URL is plain http:// to a host that is not loopback: the agent key and the tunnel "
            "token travel in clear text, readable and replayable by anyone on the network path. Use https:// "
            "(a TLS-terminating proxy in front of the API), or a tunnel/VPN to a loopback address",
            master_host=urlsplit(url).hostname,  # not the URL: it may carry credentials
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
        self.client = MasterClient(settings.master_url, effective_key(self.state, settings.api_key))
        self.client.agent_id = self.state.agent_id
        self.docker_factory = docker_factory or self._default_docker
        self.tracker = Tracker(label_prefix=settings.label_prefix, ignore_label=(MANAGED_LABEL, MANAGED_VALUE))
        self.outbox = Outbox(
            capacity=self.tuning.buffer_capacity, last_seq=self.state.last_seq, snapshot=self.tracker.inventory
        )
        self.heartbeat_seconds = self.tuning.heartbeat_seconds or 15.0
        self.poll_wait_seconds = self.tuning.poll_wait_seconds or 25.0
        self.health_port: int | None = None
        self.stopped = asyncio.Event()
        self._link = asyncio.Event()
        self._revoked = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._tunnel_lock = asyncio.Lock()
        self._watcher: watching.DockerWatcher | None = None
        self.executor = CommandExecutor(
            state=self.state,
            save=self.save_state,
            in_tunnel=self.in_tunnel,
            default_image=settings.cloudflared_image,
            configured_key=settings.api_key,
            resync=self.resync,
            tunnel_changed=lambda: self._spawn(self._report_tunnel()),
            use_key=self._use_key,
            shutdown=self.stop,
        )

    def _default_docker(self) -> docker.DockerClient:
        if self.settings.docker_host:
            return docker.DockerClient(base_url=self.settings.docker_host)
        return docker.from_env()

    async def in_tunnel(self, operation: Callable[[TunnelManager], T]) -> T:
        """Run a blocking cloudflared operation in a worker thread with its own short-lived Docker client."""

        def run() -> T:
            manager = TunnelManager(self.docker_factory, allowed_image=self.settings.cloudflared_image)
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

    def _use_key(self, key: str) -> None:
        self.client.key = key
        log.info("now using the rotated agent key")

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
        try:
            self._spawn(self._restore_tunnel())
            queue: asyncio.Queue[watching.WatchItem] = asyncio.Queue()
            self._watcher = watching.DockerWatcher(self.docker_factory, queue, asyncio.get_running_loop())
            self._watcher.start()
            self._spawn(self._consume(queue))
            self._spawn(self._start_talking())
            self._spawn(self._flush_state())
            await self.stopped.wait()
        finally:
            if self._watcher is not None:
                self._watcher.stop()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._watcher is not None:
                await asyncio.to_thread(self._watcher.join)
            await self.client.close()
            await runner.cleanup()
            self.save_state()
        return 0

    async def _restore_tunnel(self) -> None:
        """Bring cloudflared back from disk: it serves traffic whether or not the master is reachable. Retried in
        the background while the engine is unreachable (a host booting may start the agent before the engine)."""
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
                log.warning(
                    "the saved state names another cloudflared image; running the configured one",
                    saved_image=st.tunnel_image,
                    image=image,
                )
                st.tunnel_image = image
            try:
                result = await self.in_tunnel(_ensure(tunnel_id, token, image))
            except Exception as exc:  # engine down or refusing: keep trying, the tunnel is what serves traffic
                delay = backoff.next()
                log.error(
                    "could not restore cloudflared; retrying", tunnel_id=tunnel_id, error=str(exc), retry_in=delay
                )
                await asyncio.sleep(delay)
                continue
            log.info("cloudflared restored from saved state", action=result.action, tunnel_id=tunnel_id)
            return

    async def _consume(self, queue: asyncio.Queue[watching.WatchItem]) -> None:
        while True:
            item = await queue.get()
            if isinstance(item, watching.Snapshot):
                inventory = self.tracker.snapshot(item.containers)
                log.info("docker inventory", containers=len(inventory.containers))
                self._log_errors(inventory.containers)
                self.outbox.put(inventory)
            elif isinstance(item, watching.Event):
                log.debug("docker event", action=item.raw.get("Action"), id=str(item.raw.get("id", ""))[:12])
                event = self.tracker.event(item.raw)
                if event is not None:
                    container = getattr(event, "container", None)
                    if container is not None:
                        self._log_errors((container,))
                    self.outbox.put(event)

    def _log_errors(self, containers: Any) -> None:
        for info in containers:
            for error in info.errors:
                log.warning("invalid label", container=info.name, label=error.label, reason=error.reason)

    async def _register(self) -> bool:
        """One registration attempt; True when the gate is open afterwards."""
        st = self.state
        token = st.tunnel_token if st.tunnel_wanted and st.tunnel_id else None
        request = RegisterRequest(
            display_name=socket.gethostname(),
            hostname=socket.gethostname(),
            version=agent_version(),
            capabilities=CAPABILITIES,
            # Lets a control plane that lost its data restore this agent's enrolment (see RegisterRequest).
            tunnel_id=st.tunnel_id if token else None,
            tunnel_token_sha256=hashlib.sha256(token.encode()).hexdigest() if token else None,
        )
        response = await self.client.register(request)
        if response.agent_id != self.state.agent_id:
            self.state.agent_id = response.agent_id
            self.save_state()
        self.outbox.rebase(response.last_seq, response.agent_id)
        self.heartbeat_seconds = self.tuning.heartbeat_seconds or response.heartbeat_interval_seconds
        self.poll_wait_seconds = self.tuning.poll_wait_seconds or response.poll_wait_seconds
        log.info("registered with the master", agent_id=response.agent_id, status=response.status)
        self._revoked = False
        self._link.set()
        return True

    async def _start_talking(self) -> None:
        backoff = Backoff(initial=0.2, maximum=self.tuning.register_backoff_max)
        while True:
            try:
                await self._register()
                break
            except MasterUnavailable as exc:
                MASTER_ERRORS.labels(call="register", kind="unavailable").inc()
                delay = exc.retry_after if exc.retry_after is not None else backoff.next()
                log.warning("master unreachable; running on last-known state", error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
            except (KeyRejected, RequestRejected) as exc:
                MASTER_ERRORS.labels(call="register", kind="key_rejected").inc()
                self._spawn(self.on_key_rejected(exc))
                break
        self._spawn(
            send_loop(
                self.outbox,
                self.client.send_events,
                max_batch=self.tuning.max_batch,
                linger=self.tuning.linger_seconds,
                on_accepted=self._accepted,
                on_key_rejected=self.on_key_rejected,
            )
        )
        self._spawn(CommandPoller(self).run())
        self._spawn(self._heartbeats())

    def _accepted(self, last_seq: int) -> None:
        # Kept in memory and saved by ``_flush_state`` now and then: an fsync per batch would stall the event loop
        # under a burst, and the number is only a hint (registration returns the master's authoritative one).
        self.state.last_seq = max(self.state.last_seq, last_seq)

    async def _flush_state(self) -> None:
        saved = self.state.last_seq
        while True:
            await asyncio.sleep(self.tuning.state_flush_seconds)
            if self.state.last_seq != saved:
                saved = self.state.last_seq
                await asyncio.to_thread(self.save_state)

    async def on_key_rejected(self, exc: Exception) -> None:
        """Close the gate; only a slow re-register runs until the master takes a key again. Returns when open."""
        if not self._revoked:
            self._revoked = True
            self._link.clear()
            log.error(
                "the master rejected this agent's key (revoked or unknown); all calls stopped except a re-register "
                f"attempt every {self.tuning.reregister_seconds}s. Set a valid FLAREPORT_API_KEY to recover.",
                error=str(exc),
            )
            self._spawn(self._reregister_slowly())
        await self._link.wait()

    async def _reregister_slowly(self) -> None:
        while not self._link.is_set():
            await asyncio.sleep(self.tuning.reregister_seconds)
            with contextlib.suppress(MasterUnavailable, KeyRejected, RequestRejected):
                await self._register()
                self.outbox.put(self.tracker.inventory())

    async def wait_link(self) -> None:
        await self._link.wait()

    async def tunnel_state(self) -> TunnelState:
        try:
            tunnel_id = self.state.tunnel_id
            return await self.in_tunnel(lambda tm: tm.state(tunnel_id))
        except Exception as exc:  # the engine is unreachable: report that instead of failing the heartbeat
            log.debug("cannot inspect cloudflared", error=str(exc))
            return TunnelState(container_state="unknown", tunnel_id=self.state.tunnel_id)

    async def _report_tunnel(self) -> None:
        self.outbox.put(TunnelStatus(agent_id="", tunnel=await self.tunnel_state()))

    async def _heartbeats(self) -> None:
        while True:
            await self._link.wait()
            request = HeartbeatRequest(
                tunnel=await self.tunnel_state(), docker_reachable=self.docker_connected, agent_version=agent_version()
            )
            try:
                response = await self.client.heartbeat(request)
                HEARTBEATS.inc()
                if response.reregister:
                    log.warning("the master lost this agent's record; registering again")
                    await self._register()
                    self.outbox.put(self.tracker.inventory())
            except MasterUnavailable as exc:
                MASTER_ERRORS.labels(call="heartbeat", kind="unavailable").inc()
                log.debug("heartbeat failed", error=str(exc))
            except RequestRejected as exc:
                MASTER_ERRORS.labels(call="heartbeat", kind="rejected").inc()
                log.warning("heartbeat rejected", error=str(exc))
            except KeyRejected as exc:
                MASTER_ERRORS.labels(call="heartbeat", kind="key_rejected").inc()
                await self.on_key_rejected(exc)
                continue
            await asyncio.sleep(self.heartbeat_seconds)


def _ensure(tunnel_id: str, token: str, image: str) -> Callable[[TunnelManager], TunnelResult]:
    return lambda manager: manager.ensure(tunnel_id, token, image)
