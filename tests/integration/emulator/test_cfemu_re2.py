"""Ingress path regexes are judged in Go's dialect (RE2), as cloudflared and Cloudflare judge them, not Python's."""

from __future__ import annotations

from typing import Any, cast

import cloudflare
import pytest

from flareport_cfemu.testing import ACCOUNT_ID

CATCH_ALL = {"service": "http_status:404"}
# Python's ``re`` compiles every one of these; Go's regexp refuses them.
REFUSED_BY_RE2 = ["^/a(?=b)", "^/(a)\\1", "^/a(?!b)", "(?<=x)/y", "^/a++", "^/api\\Z", "^/\\C"]
# Python's ``re`` refuses every one of these; Go's regexp compiles them.
ACCEPTED_BY_RE2 = ["^/\\pL+$", "^/api\\z", "^/(?<v>v[0-9]+)/"]


async def test_paths_go_refuses_are_refused_and_paths_it_accepts_are_stored(acf: cloudflare.AsyncCloudflare) -> None:
    tunnels = acf.zero_trust.tunnels.cloudflared
    tunnel = await tunnels.create(account_id=ACCOUNT_ID, name="re2", config_src="cloudflare")
    assert tunnel.id is not None
    for path in REFUSED_BY_RE2:
        ingress = [{"hostname": "a.example.com", "path": path, "service": "http://w:80"}, CATCH_ALL]
        with pytest.raises(cloudflare.BadRequestError) as caught:
            await tunnels.configurations.update(
                tunnel.id, account_id=ACCOUNT_ID, config=cast(Any, {"ingress": ingress})
            )
        assert "Rule #1 has an invalid regex: error parsing regexp" in str(caught.value), path
    rules: Any = [
        {"hostname": f"p{i}.example.com", "path": path, "service": "http://w:80"}
        for i, path in enumerate(ACCEPTED_BY_RE2)
    ]
    put = await tunnels.configurations.update(
        tunnel.id, account_id=ACCOUNT_ID, config=cast(Any, {"ingress": [*rules, CATCH_ALL]})
    )
    assert put is not None and put.version == 1
    stored = await tunnels.configurations.get(tunnel.id, account_id=ACCOUNT_ID)
    assert stored is not None and stored.config is not None and stored.config.ingress is not None
    assert [rule.path for rule in stored.config.ingress[:-1]] == ACCEPTED_BY_RE2
