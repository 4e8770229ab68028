"""What of the caller's request, besides its body, both proxies pass to the upstream:
the headers ``serve --forward-header NAME`` names and the query parameters
``serve --forward-query NAME`` names; nothing by default.

Opt-in by name, as mature gateways do (LiteLLM's ``forward_client_headers`` is off by
default): a caller's request carries what is meant for this server (its key, cookies,
framing) beside what is meant for the upstream (OpenRouter's ``HTTP-Referer`` and
``X-Title``, ``OpenAI-Organization``, Helicone's or Portkey's headers, Azure's
``api-version``), and only the operator knows which is which. Headers that must never
travel are refused whatever the operator names (``NEVER_FORWARDED``): the SDK's own
headers win over nothing the caller sends, so a forwarded ``authorization`` replaced
the upstream's key with the caller's.

Query parameters are forwarded through the SDKs' ``extra_query``, which is the whole
query of a ``chat.completions.create`` or ``messages.create`` call, so the upstream gets
``?name=value`` as the caller sent it. A parameter given twice is refused (400): the SDKs
write a repeated value as ``name[]=``, which is not what the caller sent.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable

from guardrail_dro.errors import ConfigError
from guardrail_dro.serve.http.schema import ApiError

__all__ = [
    "NEVER_FORWARDED",
    "caller_headers",
    "caller_query",
    "forward_header_names",
    "forward_query_names",
]

_CREDENTIAL = (
    "a credential: the upstream gets this server's key (--upstream-key-env / "
    "--anthropic-upstream-key-env), never the caller's"
)
_FRAMING = "hop-by-hop or framing: the SDK writes its own for the request it sends"

#: Header names (lower case) never forwarded, with why: ``--forward-header`` refuses them.
NEVER_FORWARDED: dict[str, str] = {
    **dict.fromkeys(
        ("authorization", "proxy-authorization", "x-api-key", "api-key", "cookie"), _CREDENTIAL
    ),
    **dict.fromkeys(
        (
            "host",
            "content-length",
            "transfer-encoding",
            "connection",
            "keep-alive",
            "proxy-connection",
            "te",
            "trailer",
            "upgrade",
            "expect",
            "content-type",
            "content-encoding",
            "accept-encoding",
        ),
        _FRAMING,
    ),
    "anthropic-version": (
        "the SDK sends the version whose shapes the rails read; a caller's other version "
        "would change the reply they check"
    ),
}

#: RFC 9110's token: the characters a header name may hold.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def forward_header_names(names: Iterable[str]) -> tuple[str, ...]:
    """``names`` as ``--forward-header`` takes them: lower case (header names are
    case-insensitive), each once, in the order given.

    Raises:
        ConfigError: naming the option: a name that is no header name, or one of
            ``NEVER_FORWARDED`` (and why).
    """
    out: list[str] = []
    for given in names:
        name = given.strip().lower()
        if not _TOKEN.fullmatch(name):
            raise ConfigError(
                f"--forward-header {given!r}: give a header name (letters, digits, '-'), "
                "e.g. --forward-header HTTP-Referer"
            )
        why = NEVER_FORWARDED.get(name)
        if why is not None:
            raise ConfigError(f"--forward-header {given}: never forwarded, {why}")
        if name not in out:
            out.append(name)
    return tuple(out)


def forward_query_names(names: Iterable[str]) -> tuple[str, ...]:
    """``names`` as ``--forward-query`` takes them: each once, in the order given (query
    parameter names are case-sensitive, kept as given).

    Raises:
        ConfigError: naming the option: an empty name, or one holding ``&``, ``=``,
            ``?``, ``#`` or whitespace (a query, not a parameter's name).
    """
    out: list[str] = []
    for name in names:
        if not name or any(c in name for c in "&=?#") or any(c.isspace() for c in name):
            raise ConfigError(
                f"--forward-query {name!r}: give one query parameter's name, e.g. "
                "--forward-query api-version"
            )
        if name not in out:
            out.append(name)
    return tuple(out)


def caller_headers(items: Iterable[tuple[str, str]], names: Iterable[str]) -> dict[str, str]:
    """The caller's headers (``items``: name, value pairs) that ``names`` (lower case)
    name, a header sent twice joined with ``", "`` (RFC 9110's list form); one named
    but not sent is not sent on.

    Raises:
        ApiError: 400 naming the header: a forwarded value that is not ASCII. The SDKs
            cannot send its bytes as the caller sent them (the server decoded them as
            Latin-1): openai's client failed to encode it, answered as a 502 blaming
            the upstream, and anthropic's sent it re-encoded as UTF-8, garbled.
    """
    wanted = set(names)
    out: dict[str, str] = {}
    for name, value in items:
        key = name.lower()
        if key not in wanted:
            continue
        if not value.isascii():
            raise ApiError(
                400,
                f"header {key!r}: this proxy forwards ASCII values only (percent-encode "
                "or drop the other characters)",
                param=key,
            )
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def caller_query(query: str, names: Iterable[str]) -> dict[str, str]:
    """The parameters of the caller's raw ``query`` string that ``names`` name, decoded.

    Raises:
        ApiError: 400 naming the parameter: a forwarded one given more than once.
    """
    wanted = set(names)
    out: dict[str, str] = {}
    for name, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
        if name not in wanted:
            continue
        if name in out:
            raise ApiError(
                400,
                f"query parameter {name!r} is given more than once; this proxy forwards one value",
                param=name,
            )
        out[name] = value
    return out
