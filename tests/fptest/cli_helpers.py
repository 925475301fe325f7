"""Helpers for the admin CLI tests: a real ``flareport api`` process, running CLI commands, read-model documents.

The CLI runs in-process (its ``main`` with stdout/stderr captured) against the API process over real HTTP, which
keeps each command fast while still crossing a real socket. Read-model documents are written the way the
reconciler writes them (JSON ``AgentRecord``/``RuleRecord`` plus the index sets), since the reconciler itself is
not running in these tests.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import redis

from flareport_cli.localredis import free_port
from flareport_cli.main import main as flareport
from flareport_common.keys import Keys
from flareport_common.messages import IntentMessage
from flareport_common.messages.deadletters import DeadLetter
from flareport_common.readmodel import AgentRecord, RuleRecord
from flareport_common.streams.codec import FIELD, encode
from fptest.api_helpers import MASTER
from fptest.waiting import wait_for_sync


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def lines(self) -> list[str]:
        return self.out.splitlines()


def run_cli(*argv: str) -> Result:
    """``flareport ARGV...`` in this process; the connection comes from FLAREPORT_URL/MASTER_API_KEY."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = flareport(list(argv))
    return Result(code=code, out=out.getvalue(), err=err.getvalue())


def row(result: Result, first_cell: str) -> list[str]:
    """The table row whose first column is ``first_cell``, split into its cells (cells never contain 2 spaces)."""
    for line in result.lines():
        cells = [c.strip() for c in line.split("  ") if c.strip()]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row starting with {first_cell!r} in:\n{result.out}{result.err}")


@dataclass
class ApiProcess:
    url: str
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def api_process(
    redis_url: str, prefix: str, log_path: Path, extra_env: dict[str, str] | None = None
) -> Iterator[ApiProcess]:
    """``flareport api`` as its own process on a free port, configured only through the environment."""
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "MASTER_API_KEY": MASTER,
        "FLAREPORT_API_HOST": "127.0.0.1",
        "FLAREPORT_API_PORT": str(port),
        "FLAREPORT_KEY_PREFIX": prefix,
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "warning",
        **(extra_env or {}),
    }
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "flareport_cli", "api"], env=env, stdout=log, stderr=log)
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"api exited with {process.returncode}: {log_path.read_text()}")
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=1) as response:  # noqa: S310 - loopback
                    return bool(response.status == 200)
            except OSError:
                return False

        try:
            wait_for_sync(ready, timeout=20, what="the api process to answer /readyz")
            yield ApiProcess(url=url, process=process)
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class ReadModel:
    """Writes read-model documents as the reconciler does (``records.update_agent`` / ``update_rules``)."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    def put_agent(self, record: AgentRecord) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.keys.agent(record.agent_id), msgspec.json.encode(record))
        pipe.sadd(self.keys.agents_index, record.agent_id)
        pipe.execute()

    def put_rule(self, record: RuleRecord) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.keys.rule(record.key), msgspec.json.encode(record))
        pipe.sadd(self.keys.rules_index, record.key)
        pipe.execute()

    def intents(self) -> list[Any]:
        decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(IntentMessage)
        entries: Any = self.client.xrange(self.keys.intents)
        return [decoder.decode(fields[FIELD]) for _, fields in entries]

    def put_dead_letter(self, source_stream: str, payload: dict[str, str], error: str = "boom") -> str:
        """A dead letter as the stream runtime writes it; returns its entry id."""
        letter = DeadLetter(
            source_stream=source_stream,
            source_id="1-1",
            group="reconciler",
            consumer="reconciler-1",
            reason="permanent_error",
            error=error,
            deliveries=3,
            payload=payload,
        )
        entry_id = self.client.xadd(self.keys.dead_letters, encode(letter))  # type: ignore[arg-type]
        return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def register_agent(url: str, key: str, name: str = "edge one") -> str:
    """Register as an agent would (``POST /api/v1/agents/register``) and return the new agent id."""
    request = urllib.request.Request(  # noqa: S310 - loopback
        url + "/api/v1/agents/register",
        data=json.dumps({"display_name": name}).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        return str(json.loads(response.read())["agent_id"])
