"""``flareport tunnels`` against a real API process: the list with its age, one tunnel's connectors, the actions
(refused for a tunnel Flareport did not create), and ``--json``."""

from __future__ import annotations

import json
import re

import redis

from flareport_common.keys import Keys
from flareport_common.messages.intents import TunnelRestartRequested, TunnelsRefreshRequested
from fptest import tunnels_seed
from fptest.cli_helpers import ApiProcess, ReadModel, run_cli
from fptest.tunnels_seed import FOREIGN, IMAGE, ORIGIN_IP, OURS


def test_tunnels_ls_show_and_actions(
    api: ApiProcess, sync_redis: redis.Redis, keys: Keys, readmodel: ReadModel
) -> None:
    pipe = sync_redis.pipeline(transaction=True)
    tunnels_seed.queue(pipe, keys)
    pipe.execute()

    listed = run_cli("tunnels", "ls")
    assert listed.code == 0, listed.err
    ours = next(line for line in listed.out.splitlines() if line.startswith(OURS))
    assert "healthy" in ours and "web host (a1)" in ours and "restart, redeploy" in ours
    foreign = next(line for line in listed.out.splitlines() if line.startswith(FOREIGN))
    assert "dashboard-made" in foreign and foreign.rstrip().endswith("none")
    age = re.search(r"Listed from Cloudflare (\d+)s ago\.", listed.out)
    assert age is not None and int(age[1]) >= tunnels_seed.LISTED_SECONDS_AGO, listed.out

    as_json = run_cli("tunnels", "ls", "--json")
    assert as_json.code == 0, as_json.err
    body = json.loads(as_json.out)
    assert [t["created_by_flareport"] for t in body["tunnels"]] == [True, False]

    shown = run_cli("tunnels", "show", OURS)
    assert shown.code == 0, shown.err
    assert ORIGIN_IP in shown.out and "2025.9.0" in shown.out and "connected" in shown.out

    refused = run_cli("tunnels", "restart", FOREIGN)
    assert refused.code != 0 and "not created by Flareport" in refused.err, refused.err
    wrong_image = run_cli("tunnels", "redeploy", OURS, "--image", "other/cloudflared:1")
    assert wrong_image.code != 0 and "image" in wrong_image.err and IMAGE in wrong_image.err, wrong_image.err

    assert run_cli("tunnels", "restart", OURS).code == 0
    redeployed = run_cli("tunnels", "redeploy", OURS, "--image", IMAGE, "--json")
    assert redeployed.code == 0 and json.loads(redeployed.out)["intent_id"], redeployed.err
    refreshed = run_cli("tunnels", "refresh")
    assert refreshed.code == 0 and "requested" in refreshed.out, refreshed.err
    restart, redeploy, refresh = readmodel.intents()
    assert isinstance(restart, TunnelRestartRequested) and restart.image is None
    assert isinstance(redeploy, TunnelRestartRequested) and redeploy.image == IMAGE
    assert isinstance(refresh, TunnelsRefreshRequested)
