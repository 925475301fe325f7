"""``flareport status``, ``reconcile`` and ``dlq`` against a real API process, and the CLI as its own process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from flareport_common.keys import Keys
from fptest.api_helpers import MASTER
from fptest.cli_helpers import ApiProcess, ReadModel, row, run_cli


def test_status_shows_counts_and_every_stream_with_its_groups(
    api: ApiProcess, readmodel: ReadModel, keys: Keys
) -> None:
    readmodel.client.xgroup_create(keys.intents, "reconciler", id="0", mkstream=True)
    run_cli("reconcile")  # one undelivered intent: lag 1
    status = run_cli("status")
    assert status.code == 0, status.err
    assert "agents:       0" in status.out and "rules:        0" in status.out
    assert "cloudflare:   no rate limit data yet" in status.out
    assert "calls left until" not in status.out, "nothing said of Cloudflare's count before it answered"
    assert row(status, keys.intents)[1:] == ["1", "reconciler", "0", "0", "1"]

    body = run_cli("status", "--json").json()
    intents = next(s for s in body["streams"] if s["stream"] == keys.intents)
    assert intents["groups"][0]["name"] == "reconciler"

    # Once a Cloudflare answer said how much of the account's budget is left (the dns-worker keeps it in Redis).
    resets = int((time.time() + 120) * 1000)
    readmodel.client.hset(keys.cf_rate_standing, mapping={"left": "37", "until": str(resets)})
    status = run_cli("status")
    assert "cf budget:    37 calls left until" in status.out, status.out


def test_reconcile_writes_the_intent_with_scope_and_verify(api: ApiProcess, readmodel: ReadModel) -> None:
    default = run_cli("reconcile")
    assert default.code == 0, default.err
    assert "Reconcile of all requested with verification" in default.out
    scoped = run_cli("reconcile", "--scope", "zone:example.com", "--no-verify")
    assert scoped.code == 0, scoped.err
    assert [(i.scope, i.verify) for i in readmodel.intents()] == [("all", True), ("zone:example.com", False)]

    bad = run_cli("reconcile", "--scope", "everything please")
    assert bad.code == 1 and "(field: scope)" in bad.err


def test_dlq_ls_pages_and_replay_puts_letters_back(api: ApiProcess, readmodel: ReadModel, keys: Keys) -> None:
    first = readmodel.put_dead_letter(keys.intents, {"m": '{"type":"x"}'}, error="cannot decode")
    second = readmodel.put_dead_letter(keys.events, {"m": '{"type":"y"}'})

    listed = run_cli("dlq", "ls")
    assert listed.code == 0, listed.err
    assert row(listed, first)[1:6] == [keys.intents, "reconciler", "permanent_error", "3", row(listed, first)[5]]
    assert row(listed, first)[-1] == "cannot decode"

    page = run_cli("dlq", "ls", "--count", "1")
    assert f"(more: flareport dlq ls --after {first})" in page.out
    rest = run_cli("dlq", "ls", "--after", first, "--json").json()
    assert [d["entry_id"] for d in rest["dead_letters"]] == [second]

    replayed = run_cli("dlq", "replay", first, second)
    assert replayed.code == 0, replayed.err
    assert f"Replayed {first} onto {keys.intents} as " in replayed.out
    assert f"Replayed {second} onto {keys.events} as " in replayed.out
    assert run_cli("dlq", "ls").out == "(none)\n"
    entries: Any = readmodel.client.xrange(keys.intents)
    assert [fields for _, fields in entries] == [{b"m": b'{"type":"x"}'}]


def test_dlq_replay_errors(api: ApiProcess, readmodel: ReadModel, keys: Keys) -> None:
    missing = run_cli("dlq", "replay", "1-0")
    assert missing.code == 5 and "unknown dead letter" in missing.err
    foreign = readmodel.put_dead_letter("someone-else:stream", {"m": "{}"})
    refused = run_cli("dlq", "replay", foreign)
    assert refused.code == 1 and "[HTTP 409 foreign_stream]" in refused.err
    bad_id = run_cli("dlq", "replay", "not-an-id")
    assert bad_id.code == 1 and "(field: entry_id)" in bad_id.err


def _flareport(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flareport_cli", *argv], env=env, capture_output=True, text=True, timeout=60
    )


def test_the_installed_command_reads_its_connection_from_the_environment(api: ApiProcess) -> None:
    env = {**os.environ, "FLAREPORT_URL": api.url, "MASTER_API_KEY": MASTER}
    ok = _flareport("keys", "create", "from-a-shell", "--json", env=env)
    assert ok.returncode == 0, ok.stderr
    refused = _flareport("keys", "ls", env={**env, "MASTER_API_KEY": "wrong-key-wrong-key"})
    assert refused.returncode == 4, refused.stderr
    without_key = _flareport("status", env={k: v for k, v in env.items() if k != "MASTER_API_KEY"})
    assert without_key.returncode == 2
    assert "no admin key: set MASTER_API_KEY or pass --key" in without_key.stderr
    usage = _flareport("agents", "frobnicate", env=env)
    assert usage.returncode == 2 and "invalid choice: 'frobnicate'" in usage.stderr
