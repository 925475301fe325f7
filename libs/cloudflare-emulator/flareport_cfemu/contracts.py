"""Contract checks: requests and responses held against the official ``cloudflare`` SDK's published types.

The emulator and the dns-worker are written by the same project, so a mistake they share (a field Cloudflare does
not have, a type it does not use) would pass every test. With checks on, every ``/client/v4`` call that has a
contract below is held against the SDK's own types, which Cloudflare generates from its OpenAPI schema:

* the **request** of an SDK client (``X-Stainless-Lang`` header; raw HTTP probes of the emulator's own validation
  are left alone): every JSON body field and query parameter must be one the endpoint's params ``TypedDict``
  names (by its wire name, e.g. ``originRequest``), with a value of the declared type (``Literal`` values,
  nested ``TypedDict`` s, lists, unions), and the ``Required`` ones present;
* the **response** of every successful call: ``result`` (each item of a list) must validate against the SDK's
  pydantic model in strict JSON mode, and carry no field the model does not declare (the SDK's models accept
  unknown fields silently, so a made-up field would otherwise pass).

Modes (``FLAREPORT_CFEMU_CONTRACTS``): ``off`` (default), ``record`` (violations are recorded only), ``strict``
(also, a request that breaks its contract is refused with 400, code 1001, naming the field and the SDK type).
Every violation is kept (``GET /__emulator/contracts``) and, with ``FLAREPORT_CFEMU_CONTRACTS_LOG`` set, appended
to that file as a JSON line — the test suite turns each into a failure of the test that caused it.
"""

from __future__ import annotations

import collections.abc
import datetime
import importlib
import json
import os
import re
import threading
import types
import typing
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typing_extensions
from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError

from flareport_cfemu import errors
from flareport_cfemu.envelope import API_PREFIX
from flareport_cfemu.errors import bad_request
from flareport_cfemu.requestlog import UNMATCHED

ENV_MODE = "FLAREPORT_CFEMU_CONTRACTS"
ENV_LOG = "FLAREPORT_CFEMU_CONTRACTS_LOG"
MODES = ("off", "record", "strict")
SDK_HEADER = "X-Stainless-Lang"
MAX_KEPT = 1000

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_T = "cloudflare.types."
_DNS, _TUN, _ACC, _ZT = _T + "dns.", _T + "zero_trust.tunnels.", _T + "zero_trust.access.", _T + "zero_trust."


@dataclass(frozen=True)
class Contract:
    """SDK types of one endpoint, as ``"module:Name"``: the JSON body's params, the query's params, the result's
    model (of each item when ``many``). Imported only when checks are on."""

    body: str | None = None
    query: str | None = None
    result: str | None = None
    many: bool = False


_APP = "/accounts/{account_id}/access/apps/{app_id}"
_TUNNEL = "/accounts/{account_id}/cfd_tunnel/{tunnel_id}"
_RECORD = "/zones/{zone_id}/dns_records/{dns_record_id}"
_RECORD_RESPONSE = _DNS + "record_response:RecordResponse"
_TUNNEL_MODEL = _T + "shared.cloudflare_tunnel:CloudflareTunnel"
_IDP = _ZT + "identity_provider:IdentityProvider"

CONTRACTS: dict[str, Contract] = {
    "GET /zones": Contract(
        query=_T + "zones.zone_list_params:ZoneListParams", result=_T + "zones.zone:Zone", many=True
    ),
    "GET /zones/{zone_id}": Contract(result=_T + "zones.zone:Zone"),
    "GET /zones/{zone_id}/dns_records": Contract(
        query=_DNS + "record_list_params:RecordListParams", result=_RECORD_RESPONSE, many=True
    ),
    "POST /zones/{zone_id}/dns_records": Contract(
        body=_DNS + "record_create_params:RecordCreateParams", result=_RECORD_RESPONSE
    ),
    "POST /zones/{zone_id}/dns_records/batch": Contract(
        body=_DNS + "record_batch_params:RecordBatchParams", result=_DNS + "record_batch_response:RecordBatchResponse"
    ),
    f"GET {_RECORD}": Contract(result=_RECORD_RESPONSE),
    f"PUT {_RECORD}": Contract(body=_DNS + "record_update_params:RecordUpdateParams", result=_RECORD_RESPONSE),
    f"PATCH {_RECORD}": Contract(body=_DNS + "record_edit_params:RecordEditParams", result=_RECORD_RESPONSE),
    f"DELETE {_RECORD}": Contract(result=_DNS + "record_delete_response:RecordDeleteResponse"),
    "GET /accounts/{account_id}/cfd_tunnel": Contract(
        query=_TUN + "cloudflared_list_params:CloudflaredListParams", result=_TUNNEL_MODEL, many=True
    ),
    "POST /accounts/{account_id}/cfd_tunnel": Contract(
        body=_TUN + "cloudflared_create_params:CloudflaredCreateParams", result=_TUNNEL_MODEL
    ),
    f"GET {_TUNNEL}": Contract(result=_TUNNEL_MODEL),
    f"PATCH {_TUNNEL}": Contract(body=_TUN + "cloudflared_edit_params:CloudflaredEditParams", result=_TUNNEL_MODEL),
    f"DELETE {_TUNNEL}": Contract(result=_TUNNEL_MODEL),
    f"GET {_TUNNEL}/connections": Contract(result=_TUN + "cloudflared.client:Client", many=True),
    f"DELETE {_TUNNEL}/connections": Contract(
        query=_TUN + "cloudflared.connection_delete_params:ConnectionDeleteParams"
    ),
    f"GET {_TUNNEL}/token": Contract(result="builtins:str"),
    f"GET {_TUNNEL}/configurations": Contract(
        result=_TUN + "cloudflared.configuration_get_response:ConfigurationGetResponse"
    ),
    f"PUT {_TUNNEL}/configurations": Contract(
        body=_TUN + "cloudflared.configuration_update_params:ConfigurationUpdateParams",
        result=_TUN + "cloudflared.configuration_update_response:ConfigurationUpdateResponse",
    ),
    "GET /accounts/{account_id}/access/apps": Contract(
        query=_ACC + "application_list_params:ApplicationListParams",
        result=_ACC + "application_list_response:ApplicationListResponse",
        many=True,
    ),
    "POST /accounts/{account_id}/access/apps": Contract(
        body=_ACC + "application_create_params:ApplicationCreateParams",
        result=_ACC + "application_create_response:ApplicationCreateResponse",
    ),
    f"GET {_APP}": Contract(result=_ACC + "application_get_response:ApplicationGetResponse"),
    f"PUT {_APP}": Contract(
        body=_ACC + "application_update_params:ApplicationUpdateParams",
        result=_ACC + "application_update_response:ApplicationUpdateResponse",
    ),
    f"DELETE {_APP}": Contract(result=_ACC + "application_delete_response:ApplicationDeleteResponse"),
    f"GET {_APP}/policies": Contract(
        query=_ACC + "applications.policy_list_params:PolicyListParams",
        result=_ACC + "applications.policy_list_response:PolicyListResponse",
        many=True,
    ),
    f"POST {_APP}/policies": Contract(
        body=_ACC + "applications.policy_create_params:PolicyCreateParams",
        result=_ACC + "applications.policy_create_response:PolicyCreateResponse",
    ),
    f"GET {_APP}/policies/{{policy_id}}": Contract(result=_ACC + "applications.policy_get_response:PolicyGetResponse"),
    f"PUT {_APP}/policies/{{policy_id}}": Contract(
        body=_ACC + "applications.policy_update_params:PolicyUpdateParams",
        result=_ACC + "applications.policy_update_response:PolicyUpdateResponse",
    ),
    f"DELETE {_APP}/policies/{{policy_id}}": Contract(
        result=_ACC + "applications.policy_delete_response:PolicyDeleteResponse"
    ),
    "GET /accounts/{account_id}/access/policies": Contract(
        query=_ACC + "policy_list_params:PolicyListParams",
        result=_ACC + "policy_list_response:PolicyListResponse",
        many=True,
    ),
    "POST /accounts/{account_id}/access/policies": Contract(
        body=_ACC + "policy_create_params:PolicyCreateParams",
        result=_ACC + "policy_create_response:PolicyCreateResponse",
    ),
    "GET /accounts/{account_id}/access/policies/{policy_id}": Contract(
        result=_ACC + "policy_get_response:PolicyGetResponse"
    ),
    "PUT /accounts/{account_id}/access/policies/{policy_id}": Contract(
        body=_ACC + "policy_update_params:PolicyUpdateParams",
        result=_ACC + "policy_update_response:PolicyUpdateResponse",
    ),
    "DELETE /accounts/{account_id}/access/policies/{policy_id}": Contract(
        result=_ACC + "policy_delete_response:PolicyDeleteResponse"
    ),
    "GET /accounts/{account_id}/access/tags": Contract(
        query=_ACC + "tag_list_params:TagListParams", result=_ACC + "tag:Tag", many=True
    ),
    "POST /accounts/{account_id}/access/tags": Contract(
        body=_ACC + "tag_create_params:TagCreateParams", result=_ACC + "tag:Tag"
    ),
    "GET /accounts/{account_id}/access/tags/{tag_name}": Contract(result=_ACC + "tag:Tag"),
    "DELETE /accounts/{account_id}/access/tags/{tag_name}": Contract(
        result=_ACC + "tag_delete_response:TagDeleteResponse"
    ),
    "GET /accounts/{account_id}/access/identity_providers": Contract(
        query=_ZT + "identity_provider_list_params:IdentityProviderListParams",
        result=_ZT + "identity_provider_list_response:IdentityProviderListResponse",
        many=True,
    ),
    "POST /accounts/{account_id}/access/identity_providers": Contract(
        body=_ZT + "identity_provider_create_params:IdentityProviderCreateParams", result=_IDP
    ),
    "GET /accounts/{account_id}/access/identity_providers/{idp_id}": Contract(result=_IDP),
    "DELETE /accounts/{account_id}/access/identity_providers/{idp_id}": Contract(
        result=_ZT + "identity_provider_delete_response:IdentityProviderDeleteResponse"
    ),
    "GET /user/tokens/verify": Contract(result=_T + "user.token_verify_response:TokenVerifyResponse"),
    "GET /accounts/{account_id}/tokens/verify": Contract(
        result=_T + "accounts.token_verify_response:TokenVerifyResponse"
    ),
    "GET /accounts/{account_id}/members": Contract(
        query=_T + "accounts.member_list_params:MemberListParams", result=_T + "shared.member:Member", many=True
    ),
}

# Fields Cloudflare sends that the SDK's models leave out, by model class name ("*": any), each with its reason.
# Anything else the SDK's models do not declare is a violation.
ALLOWED_EXTRAS: dict[tuple[str, str], str] = {
    ("*", "created_at"): "Cloudflare's v4 objects carry timestamps; some SDK models leave them out",
    ("*", "updated_at"): "Cloudflare's v4 objects carry timestamps; some SDK models leave them out",
    ("CloudflareTunnel", "token"): "the create answer carries the token: cloudflared's API client reads it there",
    ("CloudflareTunnel", "credentials_file"): "the create answer carries the credentials file, as the token",
    ("Tag", "app_count"): "Cloudflare's Access tag answers carry app_count (its API reference's example)",
}
# Problems the SDK's types report where Cloudflare's documented behaviour differs from them, with the reason.
WAIVERS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"\.ingress\[\d+\]\.hostname: (required by \S+, missing|Field required)"),
        "the last ingress rule is the catch-all, which has no hostname (cloudflared requires it so); the SDK's "
        "schema marks hostname required on every rule",
    ),
)


# Fields the SDK's params types leave out that Cloudflare documents, by TypedDict class name, with their types. The
# third kind of an app's ``policies`` item is, in Cloudflare's API reference, a policy "exclusive to the application"
# created with the app (name, decision, include, exclude, require); the SDK's generated TypedDict for that member
# keeps only its settings. These fields are checked as typed here, every other unknown field is still a violation.
_RULES = list[dict[str, Any]]
_DECISION = typing.Literal["allow", "deny", "non_identity", "bypass"]
PARAM_EXTENSIONS: dict[str, dict[str, Any]] = {
    "SelfHostedApplicationPolicyUnionMember2": {
        "name": str,
        "decision": _DECISION,
        "include": _RULES,
        "exclude": _RULES,
        "require": _RULES,
    },
}


def unwaived(problems: list[str]) -> list[str]:
    return [p for p in problems if not any(pattern.search(p) for pattern, _ in WAIVERS)]


# Query parameters every list takes that the SDK sends outside the params types, and the SDK's own additions.
_COMMON_QUERY = frozenset({"page", "per_page"})


def _load(ref: str) -> Any:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def _type_name(tp: Any) -> str:
    name = getattr(tp, "__qualname__", None) or getattr(tp, "__name__", None)
    module = getattr(tp, "__module__", "")
    return f"{module}.{name}" if name else repr(tp)


# --- requests: a value against a params type -----------------------------------------------------------------------

_REQUIRED = {typing.Required, typing_extensions.Required}
_NOT_REQUIRED = {typing.NotRequired, typing_extensions.NotRequired}
_LISTS = (list, tuple, collections.abc.Iterable, collections.abc.Sequence)


@dataclass(frozen=True)
class _Field:
    name: str  # the Python name in the TypedDict
    tp: Any
    required: bool


_FIELDS: dict[Any, dict[str, _Field]] = {}


def _fields(td: Any) -> dict[str, _Field]:
    """A TypedDict's fields keyed by their wire name (the ``PropertyInfo`` alias, else the name)."""
    cached = _FIELDS.get(td)
    if cached is not None:
        return cached
    hints = typing.get_type_hints(td, include_extras=True)
    total = getattr(td, "__total__", True)
    out: dict[str, _Field] = {}
    for name, tp in hints.items():
        required, alias = total, None
        while True:
            origin = typing.get_origin(tp)
            if origin in _REQUIRED:
                required, tp = True, typing.get_args(tp)[0]
            elif origin in _NOT_REQUIRED:
                required, tp = False, typing.get_args(tp)[0]
            elif origin is typing.Annotated:
                for meta in tp.__metadata__:
                    alias = getattr(meta, "alias", None) or alias
                tp = tp.__origin__
            else:
                break
        out[alias or name] = _Field(name, tp, required)
    for name, tp in PARAM_EXTENSIONS.get(getattr(td, "__name__", ""), {}).items():
        out.setdefault(name, _Field(name, tp, False))
    _FIELDS[td] = out
    return out


def _strip(tp: Any) -> Any:
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = tp.__origin__
        elif origin in _REQUIRED or origin in _NOT_REQUIRED:
            tp = typing.get_args(tp)[0]
        else:
            return tp


def check_value(value: Any, tp: Any, where: str, *, skip: frozenset[str] = frozenset()) -> list[str]:
    """What is wrong with ``value`` as the SDK's ``tp`` (empty when nothing). ``skip``: top-level fields the SDK
    sends elsewhere (path parameters)."""
    tp = _strip(tp)
    origin = typing.get_origin(tp)
    if tp is Any or tp is object:
        return []
    if origin is typing.Union or origin is types.UnionType:
        best: list[str] | None = None
        for option in typing.get_args(tp):
            problems = check_value(value, option, where, skip=skip)
            if not problems:
                return []
            if best is None or len(problems) < len(best):
                best = problems
        return best or [f"{where}: {value!r} matches none of {_type_name(tp)}"]
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        return [] if value in allowed else [f"{where}: {value!r} is not one of {list(allowed)}"]
    if tp is type(None):
        return [] if value is None else [f"{where}: expected null, got {value!r}"]
    if typing_extensions.is_typeddict(tp):
        return _check_typeddict(value, tp, where, skip)
    if tp is bool:
        return [] if isinstance(value, bool) else [f"{where}: expected a boolean, got {value!r}"]
    if tp is int:
        return (
            []
            if isinstance(value, int) and not isinstance(value, bool)
            else [f"{where}: expected an integer, got {value!r}"]
        )
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return [] if ok else [f"{where}: expected a number, got {value!r}"]
    if tp is str or tp in (datetime.datetime, datetime.date):
        return [] if isinstance(value, str) else [f"{where}: expected a string, got {value!r}"]
    container = origin or tp
    if container in (dict, collections.abc.Mapping):
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {value!r}"]
        args = typing.get_args(tp)
        item = args[1] if len(args) == 2 else Any
        return [p for k, v in value.items() for p in check_value(v, item, f"{where}.{k}")]
    if container in _LISTS or getattr(container, "__name__", "") == "SequenceNotStr":
        if not isinstance(value, list):
            return [f"{where}: expected a list, got {value!r}"]
        args = typing.get_args(tp)
        item = args[0] if args else Any
        return [p for i, v in enumerate(value) for p in check_value(v, item, f"{where}[{i}]")]
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        try:
            TypeAdapter(tp).validate_python(value)
        except ValidationError as exc:
            return [f"{where}: {exc.errors()[0]['msg']}"]
    return []


def _check_typeddict(value: Any, td: Any, where: str, skip: frozenset[str]) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where}: expected an object ({_type_name(td)}), got {value!r}"]
    fields = _fields(td)
    problems: list[str] = []
    for key, item in value.items():
        field = fields.get(key)
        if field is None:
            problems.append(f"{where}.{key}: unknown field, not in {_type_name(td)}")
        else:
            problems += check_value(item, field.tp, f"{where}.{key}")
    for key, field in fields.items():
        if field.required and key not in value and field.name not in skip:
            problems.append(f"{where}.{key}: required by {_type_name(td)}, missing")
    return problems


def check_query(query: collections.abc.Mapping[str, str], td: Any) -> list[str]:
    """Query parameters against a list's params type: every name (``name.exact`` -> ``name``, then ``exact`` in its
    nested type) must be declared; values are strings on the wire, so only literal choices are checked."""
    fields = _fields(td)
    problems: list[str] = []
    for key, raw in query.items():
        head, _, rest = key.partition(".")
        if head in _COMMON_QUERY and head not in fields:
            continue
        field = fields.get(head)
        if field is None:
            problems.append(f"query {key}: unknown parameter, not in {_type_name(td)}")
            continue
        tp = _strip(field.tp)
        for part in rest.split(".") if rest else ():
            nested = [t for t in (typing.get_args(tp) or (tp,)) if typing_extensions.is_typeddict(_strip(t))]
            sub = _fields(_strip(nested[0])).get(part) if nested else None
            if sub is None:
                problems.append(f"query {key}: unknown parameter, not in {_type_name(td)}")
                break
            tp = _strip(sub.tp)
        else:
            literals = [a for t in (typing.get_args(tp) or (tp,)) for a in _literal_values(t)]
            if literals and raw not in {str(v).lower() if isinstance(v, bool) else str(v) for v in literals}:
                problems.append(f"query {key}: {raw!r} is not one of {literals}")
    return problems


def _literal_values(tp: Any) -> tuple[Any, ...]:
    tp = _strip(tp)
    return typing.get_args(tp) if typing.get_origin(tp) is typing.Literal else ()


# --- responses: a result against a response model ------------------------------------------------------------------

_ADAPTERS: dict[str, TypeAdapter[Any]] = {}


def _adapter(ref: str) -> TypeAdapter[Any]:
    adapter = _ADAPTERS.get(ref)
    if adapter is None:
        adapter = _ADAPTERS[ref] = TypeAdapter(_load(ref))
    return adapter


def _extras(obj: Any, where: str) -> list[str]:
    """Fields the SDK's models do not declare (they accept and keep unknown fields as ``model_extra``)."""
    problems: list[str] = []
    if isinstance(obj, BaseModel):
        model = type(obj).__name__
        for key in sorted(obj.model_extra or {}):
            if (model, key) not in ALLOWED_EXTRAS and ("*", key) not in ALLOWED_EXTRAS:
                problems.append(f"{where}.{key}: not a field of {_type_name(type(obj))}")
        for name in type(obj).model_fields:
            problems += _extras(getattr(obj, name, None), f"{where}.{name}")
    elif isinstance(obj, list):
        for index, item in enumerate(obj):
            problems += _extras(item, f"{where}[{index}]")
    return problems


def check_result(result: Any, ref: str, where: str = "result") -> list[str]:
    adapter = _adapter(ref)
    try:
        validated = adapter.validate_json(json.dumps(result), strict=True)
    except ValidationError as exc:
        return _closest_errors(exc, ref, where)
    return _extras(validated, where)


def _closest_errors(exc: ValidationError, ref: str, where: str) -> list[str]:
    """The errors of the union member the result came closest to (a record of type A: ``ARecord``), else all."""
    found = exc.errors()
    name = ref.partition(":")[2]
    if typing.get_origin(_strip(_load(ref))) in (typing.Union, types.UnionType):
        groups: dict[Any, list[Any]] = {}
        for error in found:
            groups.setdefault(error["loc"][0] if error["loc"] else "", []).append(error)
        branch, found = min(groups.items(), key=lambda item: len(item[1]))
        name, found = f"{name}: {branch}", [{**e, "loc": e["loc"][1:]} for e in found]
    return [
        f"{where}{''.join(f'.{p}' if isinstance(p, str) else f'[{p}]' for p in e['loc'])}: {e['msg']} ({name})"
        for e in found[:5]
    ]


# --- the checker ---------------------------------------------------------------------------------------------------


class ContractChecker:
    """The mode, the violations seen, and the file they are appended to."""

    def __init__(self, mode: str | None = None, log_path: str | Path | None = None) -> None:
        self.mode = mode if mode is not None else os.environ.get(ENV_MODE, "off") or "off"
        if self.mode not in MODES:
            raise ValueError(f"{ENV_MODE} must be one of {', '.join(MODES)}, got {self.mode!r}")
        if log_path is None and os.environ.get(ENV_LOG):
            log_path = os.environ[ENV_LOG]
        self.log_path = Path(log_path) if log_path else None
        self.violations: deque[dict[str, Any]] = deque(maxlen=MAX_KEPT)
        self.total = 0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def record(self, endpoint: str, side: str, sdk_type: str, problems: list[str], path: str) -> None:
        entry = {"endpoint": endpoint, "side": side, "sdk_type": sdk_type, "problems": problems, "path": path}
        with self._lock:
            self.total += 1
            self.violations.append(entry)
            if self.log_path is not None:
                with self.log_path.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(entry) + "\n")

    def snapshot(self) -> dict[str, Any]:
        return {"mode": self.mode, "total": self.total, "violations": list(self.violations)}

    def clear(self) -> None:
        with self._lock:
            self.violations.clear()
            self.total = 0


CHECKER = web.AppKey("contracts", ContractChecker)


def _template(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical.removeprefix(API_PREFIX) if resource is not None else UNMATCHED


async def _check_request(request: web.Request, contract: Contract, checker: ContractChecker, endpoint: str) -> None:
    skip = frozenset(request.match_info)
    if contract.query is not None and request.query:
        problems = check_query({k: v for k, v in request.query.items()}, _load(contract.query))
        if problems:
            _refuse(checker, endpoint, "request", contract.query, problems, request)
    if contract.body is not None and request.can_read_body:
        try:
            body = json.loads(await request.read() or b"null")
        except ValueError:
            return  # the handler answers malformed JSON itself
        if body is None:
            return
        problems = check_value(body, _load(contract.body), "body", skip=skip)
        if problems:
            _refuse(checker, endpoint, "request", contract.body, problems, request)


def _refuse(
    checker: ContractChecker, endpoint: str, side: str, ref: str, problems: list[str], request: web.Request
) -> None:
    problems = unwaived(problems)
    if not problems:
        return
    checker.record(endpoint, side, ref.replace(":", "."), problems, request.path_qs)
    if checker.mode == "strict":
        raise bad_request(
            errors.INVALID_REQUEST,
            f"contract violation: {'; '.join(problems[:3])} (SDK type {ref.replace(':', '.')})",
        )


def _check_response(
    response: web.StreamResponse, contract: Contract, checker: ContractChecker, endpoint: str, request: web.Request
) -> None:
    if contract.result is None or not isinstance(response, web.Response) or not 200 <= response.status < 300:
        return
    body = response.body
    if not isinstance(body, bytes | bytearray):
        return
    try:
        envelope = json.loads(body)
    except ValueError:
        checker.record(endpoint, "response", "envelope", ["the body is not JSON"], request.path_qs)
        return
    result = envelope.get("result") if isinstance(envelope, dict) else None
    if contract.many:
        if not isinstance(result, list):
            problems = [f"result: expected a list, got {type(result).__name__}"]
        else:
            problems = [p for i, item in enumerate(result) for p in check_result(item, contract.result, f"result[{i}]")]
    elif result is None:
        problems = []  # the SDK types these results as optional
    else:
        problems = check_result(result, contract.result)
    problems = unwaived(problems)
    if problems:
        checker.record(endpoint, "response", contract.result.replace(":", "."), problems, request.path_qs)


@web.middleware
async def contract_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    checker = request.app.get(CHECKER)
    if checker is None or not checker.enabled or not request.path.startswith(API_PREFIX + "/"):
        return await handler(request)
    endpoint = f"{request.method} {_template(request)}"
    contract = CONTRACTS.get(endpoint)
    if contract is None:
        return await handler(request)
    if SDK_HEADER in request.headers:
        await _check_request(request, contract, checker, endpoint)
    response = await handler(request)
    _check_response(response, contract, checker, endpoint, request)
    return response


routes = web.RouteTableDef()


@routes.get("/__emulator/contracts")
async def get_contracts(request: web.Request) -> web.Response:
    return web.json_response(request.app[CHECKER].snapshot())


@routes.delete("/__emulator/contracts")
async def clear_contracts(request: web.Request) -> web.Response:
    request.app[CHECKER].clear()
    return web.json_response({"cleared": True})


@routes.post("/__emulator/contracts")
async def set_contracts(request: web.Request) -> web.Response:
    body = await request.json()
    mode = body.get("mode") if isinstance(body, dict) else None
    if mode not in MODES:
        return web.json_response(
            {"success": False, "errors": [{"code": 0, "message": f"mode: one of {MODES}"}]}, status=400
        )
    request.app[CHECKER].mode = mode
    return web.json_response(request.app[CHECKER].snapshot())
