"""``guardrail-dro serve``: a guard artifact behind OpenAI's moderation endpoint.

A thin shell over ``Guard.load``, ``ServeConfig``, ``create_app`` and ``serve``
(``guardrail_dro.serve.http``); Starlette, uvicorn and onnxruntime load inside the
command.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from guardrail_dro.cli.escalate import JudgeOptions
from guardrail_dro.cli.options import GuardDir, takes_option_groups
from guardrail_dro.serve.policy import (
    DEFAULT_MAX_CHARS,
    DEFAULT_MAX_INPUT_TURNS,
    DEFAULT_MAX_WINDOWS,
)

if TYPE_CHECKING:
    from guardrail_dro.serve.guard import Guard

__all__ = ["cautions", "register", "serve_command"]

_HELP = (
    "Serve a guard artifact over HTTP as an OpenAI-compatible moderation endpoint.\n\n"
    "POST /v1/moderations takes OpenAI's request ('input': a str or a list of str; 'model') "
    "and answers OpenAI's shape (results[].flagged, categories, category_scores over the "
    "guard's own classes) plus a `guardrail` object per result (label, label_name, "
    "toxic_score, degraded, latency_ms...). Also GET /healthz, /readyz and /metrics "
    "(Prometheus). Concurrent requests are micro-batched into one model call.\n\n"
    "Auth is off unless a key is given: --api-key-file (one key a line) or --api-key-env "
    "(a variable's name), never the key itself on the command line. Clients send "
    "'Authorization: Bearer KEY' (the openai SDK's api_key).\n\n"
    "Examples:\n\n"
    "guardrail-dro serve --guard guard --port 8000\n\n"
    "GUARD_KEY=s3cret guardrail-dro serve --guard guard --host 0.0.0.0 --api-key-env GUARD_KEY"
    "\n\nguardrail-dro serve --guard guard --escalate band.json --judge openai:gpt-4o   "
    "(texts in the band are decided by the judge; see `guardrail-dro escalation`)"
    "\n\nThen: OpenAI(base_url='http://127.0.0.1:8000/v1', api_key=...).moderations"
    '.create(input="text")'
    "\n\nGuarding proxy: with --upstream URL (an OpenAI-compatible API root) and "
    "--upstream-key-env VAR (the variable holding its key), POST /v1/chat/completions "
    "and POST /v1/responses (the Responses API; background responses refused) check the "
    "input (a harmful request is refused, never sent upstream), forward the rest and check "
    "the reply, streamed or not, as guard.wrap(client) does in process: an app is guarded "
    "by pointing its base_url here. Without --upstream both routes answer 404.\n\n"
    "OPENAI_API_KEY=sk-... guardrail-dro serve --guard guard --upstream "
    "https://api.openai.com/v1 --upstream-key-env OPENAI_API_KEY"
    "\n\nThe same for Claude apps: with --anthropic-upstream URL (an Anthropic-compatible "
    "API root, without /v1) and --anthropic-upstream-key-env VAR, POST /v1/messages guards "
    "Anthropic's Messages API (Anthropic(base_url='http://127.0.0.1:8000', api_key=...)); "
    "it also takes the server's key as 'x-api-key'. Either proxy may run alone, or both; "
    "together they admit --max-proxy-calls calls in flight (503 with Retry-After beyond).\n\n"
    "ANTHROPIC_API_KEY=sk-ant-... guardrail-dro serve --guard guard --anthropic-upstream "
    "https://api.anthropic.com --anthropic-upstream-key-env ANTHROPIC_API_KEY"
    "\n\nThe caller's headers and query string stay here (the upstream gets this server's "
    "key and the SDK's headers; Anthropic's anthropic-beta excepted) unless named: "
    "--forward-header NAME (repeatable, any case) sends that header on to the upstream of "
    "both proxies where a request carries it, e.g. OpenRouter's HTTP-Referer and X-Title, "
    "OpenAI-Organization or Helicone-Auth; credentials (authorization, x-api-key), "
    "hop-by-hop and framing headers (host, content-length, connection...) and "
    "anthropic-version are refused. --forward-query NAME does the same for a query "
    "parameter (e.g. Azure's api-version, which a caller sets with the SDK's "
    "default_query or extra_query).\n\n"
    "OPENROUTER_API_KEY=sk-or-... guardrail-dro serve --guard guard --upstream "
    "https://openrouter.ai/api/v1 --upstream-key-env OPENROUTER_API_KEY "
    "--forward-header HTTP-Referer --forward-header X-Title"
)
_LIMITS = "Limits and batching"
_PROXY = "Chat-completions proxy"
_MESSAGES = "Messages proxy (Anthropic)"


@takes_option_groups
def serve_command(
    guard_dir: GuardDir,
    host: Annotated[
        str, typer.Option("--host", help="Interface to listen on (0.0.0.0: every one).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.", min=0, max=65535)] = 8000,
    api_key_file: Annotated[
        Path | None,
        typer.Option(
            "--api-key-file", help="File of accepted API keys, one a line.", dir_okay=False
        ),
    ] = None,
    api_key_env: Annotated[
        str | None,
        typer.Option("--api-key-env", help="Name of an environment variable holding a key."),
    ] = None,
    provider: Annotated[
        str, typer.Option("--provider", help="auto | tensorrt | cuda | cpu")
    ] = "auto",
    precision: Annotated[
        str, typer.Option("--precision", help="auto | int8 | fp32 | fp16")
    ] = "auto",
    on_error: Annotated[
        str,
        typer.Option(
            "--on-error",
            help="closed (flag) | open (allow) when the model cannot answer in time or fails.",
        ),
    ] = "closed",
    max_body_bytes: Annotated[
        int,
        typer.Option(
            "--max-body-bytes",
            min=1,
            help="Largest request body (413 beyond).",
            rich_help_panel=_LIMITS,
        ),
    ] = 1_000_000,
    max_inputs: Annotated[
        int,
        typer.Option(
            "--max-inputs", min=1, help="Texts per request (400 beyond).", rich_help_panel=_LIMITS
        ),
    ] = 256,
    max_chars: Annotated[
        int,
        typer.Option(
            "--max-chars",
            min=1,
            help="Characters per text (400 beyond); the guard scores texts up to this "
            "length (its Policy.max_chars).",
            rich_help_panel=_LIMITS,
        ),
    ] = DEFAULT_MAX_CHARS,
    max_windows: Annotated[
        int,
        typer.Option(
            "--max-windows",
            min=0,
            help="Windows of a long text scored (each ~350 characters of English); a text "
            "needing more is answered degraded (decided by --on-error) after its first "
            "windows. 0: every window (cost then bounded by --max-chars alone).",
            rich_help_panel=_LIMITS,
        ),
    ] = DEFAULT_MAX_WINDOWS,
    timeout_ms: Annotated[
        float,
        typer.Option(
            "--timeout-ms",
            help="Results not ready by then are degraded (decided by --on-error); the "
            "model stops scoring a batch once all its requests have timed out.",
            rich_help_panel=_LIMITS,
        ),
    ] = 10_000.0,
    read_timeout_ms: Annotated[
        float,
        typer.Option(
            "--read-timeout-ms",
            help="A request body not received whole by then is refused (408).",
            rich_help_panel=_LIMITS,
        ),
    ] = 30_000.0,
    max_batch_texts: Annotated[
        int,
        typer.Option(
            "--max-batch-texts",
            min=1,
            help="Texts per model call across concurrent requests (1: no micro-batching).",
            rich_help_panel=_LIMITS,
        ),
    ] = 64,
    max_wait_ms: Annotated[
        float,
        typer.Option(
            "--max-wait-ms",
            help="Wait this long for more requests to batch with the first.",
            rich_help_panel=_LIMITS,
        ),
    ] = 1.0,
    max_queue_texts: Annotated[
        int,
        typer.Option(
            "--max-queue-texts",
            min=1,
            help="Texts waiting for the model (503 beyond).",
            rich_help_panel=_LIMITS,
        ),
    ] = 4096,
    upstream: Annotated[
        str | None,
        typer.Option(
            "--upstream",
            help="OpenAI-compatible API root (e.g. https://api.openai.com/v1) that POST "
            "/v1/chat/completions and POST /v1/responses forward to, guarded.",
            rich_help_panel=_PROXY,
        ),
    ] = None,
    upstream_key_env: Annotated[
        str | None,
        typer.Option(
            "--upstream-key-env",
            help="Name of an environment variable holding the upstream's API key.",
            rich_help_panel=_PROXY,
        ),
    ] = None,
    upstream_timeout_s: Annotated[
        float,
        typer.Option(
            "--upstream-timeout-s",
            min=0.001,
            help="An upstream call not answered by then is answered 504 (both proxies).",
            rich_help_panel=_PROXY,
        ),
    ] = 600.0,
    max_proxy_calls: Annotated[
        int,
        typer.Option(
            "--max-proxy-calls",
            min=1,
            help="Proxied calls in flight at once, both proxies together (a stream's until "
            "it ends or its client leaves); 503 with Retry-After beyond.",
            rich_help_panel=_PROXY,
        ),
    ] = 64,  # admission.DEFAULT_MAX_PROXY_CALLS: imported here, it loaded Starlette
    forward_header: Annotated[
        list[str] | None,
        typer.Option(
            "--forward-header",
            metavar="NAME",
            help="A header of the caller's to send on to the upstream (both proxies), "
            "repeatable, any case, e.g. HTTP-Referer, X-Title, OpenAI-Organization; "
            "none by default. Credentials (authorization, x-api-key...), hop-by-hop or "
            "framing headers (host, content-length...) and anthropic-version are refused.",
            rich_help_panel=_PROXY,
        ),
    ] = None,
    forward_query: Annotated[
        list[str] | None,
        typer.Option(
            "--forward-query",
            metavar="NAME",
            help="A query parameter of the caller's to send on to the upstream (both "
            "proxies), repeatable, e.g. api-version (Azure); none by default.",
            rich_help_panel=_PROXY,
        ),
    ] = None,
    input_turns: Annotated[
        str,
        typer.Option(
            "--input-turns",
            metavar="last|user|all",
            help="Which turns of a proxied request the input rail checks, each scored "
            "alone (both proxies): last (the last user turn, as NeMo Guardrails) is enough "
            "when your app writes the history; a client that sends the whole history can "
            "hide a request in an earlier user turn, or write an assistant turn ('Sure, "
            "step 1:') and end with 'continue'. user checks every user turn, all every turn "
            "with text (system, assistant and its tool-call arguments, tool results, "
            "Anthropic's system). Each request then re-checks its history: cost grows with "
            "the conversation.",
            rich_help_panel=_PROXY,
        ),
    ] = "last",
    max_input_turns: Annotated[
        int,
        typer.Option(
            "--max-input-turns",
            min=0,
            help="Under --input-turns user or all: a request with more turns to check is "
            "not scored but decided by --on-error (closed: refused; the caller gets the "
            "usual refusal), never by its most recent turns alone, which a client could pad "
            "past an earlier harmful one. 0: no bound (cost then grows with the body).",
            rich_help_panel=_PROXY,
        ),
    ] = DEFAULT_MAX_INPUT_TURNS,
    anthropic_upstream: Annotated[
        str | None,
        typer.Option(
            "--anthropic-upstream",
            help="Anthropic-compatible API root without /v1 (e.g. https://api.anthropic.com) "
            "that POST /v1/messages forwards to, guarded.",
            rich_help_panel=_MESSAGES,
        ),
    ] = None,
    anthropic_upstream_key_env: Annotated[
        str | None,
        typer.Option(
            "--anthropic-upstream-key-env",
            help="Name of an environment variable holding that upstream's API key.",
            rich_help_panel=_MESSAGES,
        ),
    ] = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="uvicorn's: warning | info | debug.")
    ] = "info",
    *,
    judging: JudgeOptions,
) -> None:
    from pydantic import SecretStr

    from guardrail_dro.errors import require

    require("starlette", "serve")
    require("uvicorn", "serve")
    from guardrail_dro.serve.guard import Guard
    from guardrail_dro.serve.http import ServeConfig, create_app, read_api_keys, serve
    from guardrail_dro.serve.http.forwarding import forward_header_names, forward_query_names
    from guardrail_dro.serve.policy import InputTurns, OnError, Policy

    try:
        fail = OnError(on_error)
    except ValueError:
        raise typer.BadParameter("closed or open", param_hint="--on-error") from None
    try:
        turns = InputTurns(input_turns)
    except ValueError:
        raise typer.BadParameter("last, user or all", param_hint="--input-turns") from None
    if input_turns != "last" and upstream is None and anthropic_upstream is None:
        raise typer.BadParameter(
            "give --upstream URL or --anthropic-upstream URL too: the proxies' input rail "
            "reads it (/v1/moderations checks each text it is given)",
            param_hint="--input-turns",
        )
    if input_turns == "last" and max_input_turns != DEFAULT_MAX_INPUT_TURNS:
        # it bounds the turns user / all check: under last (one turn) it bounds nothing
        raise typer.BadParameter(
            "it bounds the turns --input-turns user or all checks; the default, last, "
            "checks one: give --input-turns user or all too",
            param_hint="--max-input-turns",
        )
    policy = Policy(
        on_error=fail,
        max_chars=max_chars,
        max_windows=max_windows or None,
        input_turns=turns,
        max_input_turns=max_input_turns or None,
    )
    keys = read_api_keys(key_file=api_key_file, key_env=api_key_env)
    passed = {
        "forward_headers": forward_header_names(forward_header or ()),
        "forward_query": forward_query_names(forward_query or ()),
    }
    if (forward_header or forward_query) and upstream is None and anthropic_upstream is None:
        raise typer.BadParameter(
            "give --upstream URL or --anthropic-upstream URL too: it forwards to a proxy's "
            "upstream",
            param_hint="--forward-header" if forward_header else "--forward-query",
        )
    forward = None
    if upstream is None and upstream_key_env is not None:
        raise typer.BadParameter("give --upstream URL too", param_hint="--upstream-key-env")
    if upstream is not None:
        require("openai", "proxy")  # the proxy forwards with the openai SDK
        from guardrail_dro.serve.http.proxy import upstream_from_env

        forward = upstream_from_env(upstream, upstream_key_env, upstream_timeout_s, **passed)
    forward_messages = None
    if anthropic_upstream is None and anthropic_upstream_key_env is not None:
        raise typer.BadParameter(
            "give --anthropic-upstream URL too", param_hint="--anthropic-upstream-key-env"
        )
    if anthropic_upstream is not None:
        require("anthropic", "proxy")  # the messages proxy forwards with the anthropic SDK
        from guardrail_dro.serve.http.anthropic_proxy import anthropic_upstream_from_env

        forward_messages = anthropic_upstream_from_env(
            anthropic_upstream, anthropic_upstream_key_env, upstream_timeout_s, **passed
        )
    config = ServeConfig(
        api_keys=tuple(SecretStr(k) for k in keys),
        max_body_bytes=max_body_bytes,
        max_inputs=max_inputs,
        max_chars=max_chars,
        timeout_ms=timeout_ms,
        read_timeout_ms=read_timeout_ms,
        max_batch_texts=max_batch_texts,
        max_wait_ms=max_wait_ms,
        max_queue_texts=max_queue_texts,
    )
    guard = Guard.load(guard_dir, provider=provider, precision=precision, policy=policy)
    for line in cautions(guard):
        print(line, file=sys.stderr)
    cascade = judging.build(guard)
    auth = f"{len(keys)} API key(s)" if keys else "no auth"
    served = guard if cascade is None else cascade

    def announce(url: str) -> None:
        # Only once the port is ours: a busy --port ends in one error line instead.
        print(f"serving {served!r} on {url}/v1/moderations ({auth})", file=sys.stderr)
        if forward is not None:
            for route in ("chat/completions", "responses"):
                print(f"guarding {url}/v1/{route} -> {forward.name}", file=sys.stderr)
        if forward_messages is not None:
            print(f"guarding {url}/v1/messages -> {forward_messages.name}", file=sys.stderr)

    # A backstop: requests already end within their read and model timeouts.
    grace = (read_timeout_ms + timeout_ms) / 1e3 + 5
    serve(
        create_app(guard, config, cascade, forward, forward_messages, max_proxy_calls),
        host=host,
        port=port,
        on_bound=announce,
        log_level=log_level,
        timeout_graceful_shutdown=grace,
    )


def cautions(guard: Guard, *, threshold_given: bool = False) -> list[str]:
    """Warnings about the artifact ``guard`` serves that export printed once and serve
    (and ``check``) did not: a threshold not chosen on data (not with
    ``threshold_given``: the caller chose one), a model gated on probe texts only.

    Why: a student exported without ``--valid`` served silently at 0.5, where it blocked
    "hello there" (toxic score 0.54), with a dynamic int8 that flipped 15 of 1,000
    validation decisions once gated on them.
    """
    art = guard.artifact
    if art is None:  # Guard.from_scorer: no artifact, nothing recorded
        return []
    out = []
    cal = art.manifest.calibration
    if not threshold_given and (cal is None or not cal.calibrated):
        why = (cal.note if cal is not None else "") or (
            f"uncalibrated: threshold {art.manifest.thresholds.toxic} was not chosen on data "
            "(export with --valid to calibrate it)"
        )
        out.append(f"warning: {why}")
    variant = art.manifest.variants.get(guard.precision or "")
    if variant is not None and variant.gate == "probes":
        out.append(
            f"warning: its {guard.precision} model was gated on built-in probe texts only, "
            "not on validation data (exported without --valid): re-export with --valid, or "
            "serve --precision fp32"
        )
    return out


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to the ``guardrail-dro`` app."""
    app.command("serve", help=_HELP, no_args_is_help=True)(serve_command)
