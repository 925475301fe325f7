"""A generated admin password whose file cannot be written is not kept: its hash goes, so nobody is locked out."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio as aioredis

from flareport_api.ui.sessions import admin_password_hash
from flareport_cli.localredis import LocalRedis
from flareport_common.errors import SettingsError
from flareport_common.keys import Keys

from .conftest import ui_settings


async def test_a_generated_password_that_cannot_be_saved_leaves_no_hash_behind(
    redis_server: LocalRedis, redis: aioredis.Redis, keys: Keys, prefix: str, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    unwritable = str(blocker / "admin-password")  # its directory would have to be a file
    settings = ui_settings(redis_server.url, prefix, admin_password=None, admin_password_file=unwritable)

    with pytest.raises(SettingsError, match="FLAREPORT_ADMIN_PASSWORD_FILE"):
        await admin_password_hash(settings, redis, keys)

    assert await redis.exists(keys.ui_admin_password_hash) == 0, "a hash nobody knows the password of must not stay"
    saved = tmp_path / "state" / "admin-password"
    stored = await admin_password_hash(
        ui_settings(redis_server.url, prefix, admin_password=None, admin_password_file=str(saved)), redis, keys
    )
    assert saved.exists() and await redis.get(keys.ui_admin_password_hash) == stored.encode(), "the next start saves"
