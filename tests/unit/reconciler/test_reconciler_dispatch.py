"""The stream handlers' dispatch tables: every message type of every stream the reconciler reads has a use case."""

from __future__ import annotations

from typing import get_args

import redis.asyncio as aioredis

from flareport_common.keys import Keys
from flareport_common.messages import EventMessage, IntentMessage
from flareport_common.messages.cfresults import CfResultMessage
from flareport_common.settings import load_reconciler
from flareport_reconciler.handlers import Reconciler


def reconciler() -> Reconciler:
    # No command is sent: the client only has to exist for the use cases to be built.
    return Reconciler(aioredis.Redis(), Keys("test:"), load_reconciler({}))


def test_every_event_intent_and_result_type_names_a_use_case() -> None:
    r = reconciler()
    for union, table in ((EventMessage, r.events), (IntentMessage, r.intents), (CfResultMessage, r.results)):
        missing = {t.__name__ for t in get_args(union)} - {t.__name__ for t in table}
        assert not missing, f"messages the reconciler would acknowledge without doing anything: {sorted(missing)}"
