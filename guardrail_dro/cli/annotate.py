"""``guardrail-dro annotate``: the command-line shell over ``annotate`` / ``batch_annotate``.

This module imports only typer, the standard library and guardrail_dro at top level, so
``guardrail-dro --help`` never loads an SDK; the annotators package is imported inside
the command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from guardrail_dro.cli.annotate_notes import note_ignored, say_stopped
from guardrail_dro.cli.options import ColumnOptions, SchemaOptions, takes_option_groups
from guardrail_dro.errors import BatchPendingError, ConfigError

__all__ = ["EXIT_BATCH_PENDING", "EXIT_NOTHING_LABELLED", "EXIT_SOME_FAILED",
           "annotate_command", "register"]

_HELP = """Label a dataset with LLMs (OpenAI, Claude, OpenAI-compatible servers).

Each --annotator adds one annotator to the output, named like its spec
(openai:gpt-4o-mini): kind "llm", a label from the label schema, a rationale,
a confidence and the model name, ready for `guardrail-dro train`.

Keys come from OPENAI_API_KEY / ANTHROPIC_API_KEY; never logged or cached.

Every answer is cached in SQLite (--cache, default OUT.cache.sqlite) as it
arrives: after a crash or Ctrl-C, run the same command again and it resumes
without paying twice. Refused, invalid and failed items are counted and
listed in --failures (default OUT.failures.jsonl), never dropped silently.
A failed item is asked again by the next run; a cached invalid (or refused)
one only with --reask invalid (--reask refused); the rest stay unpaid.

\b
Exit codes:
  0  done; refused and invalid answers (listed in --failures) do not change it
  2  bad input (data, options, a missing key), or the run stopped because the
     same error came back call after call (a wrong --base-url, a bad key: the
     error is named, nothing more is sent, answers received stay cached)
  3  some requests failed (errors): OUT is written, they are in --failures and
     running the same command again asks them again
  4  nothing labelled at all (every item refused, invalid or failed): OUT is
     still written, the failures listed
  5  --batch: --max-wait passed with jobs still running; OUT is not written
     yet: run the same command again to collect the same jobs

A labeling config (--config team.toml) holds the task guidelines, the
labels and their descriptions, the prompt template, few-shot examples,
the annotators and their parameters; options given here override it.
Start from the built-in one: guardrail-dro annotate --print-config.
A changed template, guideline or example is asked again (it is part of
the cache key).

Pilot first: --limit 50 (or --sample 50 --seed 0) labels a reproducible
subset; the same command without it then pays only for the rest.

\b
Examples:
  # the exact requests, and the price per annotator, before paying
  guardrail-dro annotate --config team.toml --data q.csv --out labelled.jsonl
      --dry-run
  # a pilot of 50 items, then the rest (the same --out: the 50 are cached)
  guardrail-dro annotate --config team.toml --data q.csv --out labelled.jsonl
      --limit 50
  guardrail-dro annotate --config team.toml --data q.csv --out labelled.jsonl
  # what would it cost?
  guardrail-dro annotate --data q.csv --text-col question --labels safe,toxic
      --annotator openai:gpt-4o-mini --out labelled.jsonl --dry-run
  # two LLM annotators, classes and descriptions from a schema file
  guardrail-dro annotate --data q.csv --schema schema.json --out labelled.jsonl
      --annotator openai:gpt-4o-mini --annotator anthropic:claude-haiku-4-5
  # a local model behind Ollama's OpenAI-compatible endpoint
  OPENAI_API_KEY=local guardrail-dro annotate --data q.csv --labels safe,toxic
      --annotator openai:llama3.1 --base-url http://localhost:11434/v1
      --out labelled.jsonl
"""

_R = "Run"


def _print_config(value: bool) -> None:
    if value:
        from annotators.templates import default_config_text

        typer.echo(default_config_text(), nl=False)
        raise typer.Exit()


@takes_option_groups
def annotate_command(
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            help="Input dataset (CSV or JSONL, or a bundled split such as toxic-questions:test).",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", dir_okay=False, help="Output JSONL (the label schema is written beside it)."
        ),
    ],
    annotator: Annotated[
        list[str] | None,
        typer.Option(
            "--annotator",
            help="PROVIDER:MODEL, repeatable: openai:gpt-4o-mini, "
            "anthropic:claude-haiku-4-5 (replaces the config's \\[\\[annotators]]).",
        ),
    ] = None,
    *,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Labeling config (TOML): guidelines, labels, prompt template, "
            "few-shot examples, annotators, run settings.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    print_config: Annotated[
        bool,
        typer.Option(
            "--print-config",
            is_eager=True,
            callback=_print_config,
            expose_value=False,
            help="Print the built-in labeling config (the default prompt, commented) to copy, "
            "and exit.",
        ),
    ] = False,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            min=1,
            help="Pilot: label only the first N items (a later run without "
            "it, with the same --out or --cache, reuses their answers).",
            rich_help_panel=_R,
        ),
    ] = None,
    sample: Annotated[
        int | None,
        typer.Option(
            "--sample",
            min=1,
            help="Pilot: label N items drawn at random with --seed.",
            rich_help_panel=_R,
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of --sample.", rich_help_panel=_R)] = 0,
    schema_options: SchemaOptions,
    base_url: Annotated[
        str | None,
        typer.Option(
            "--base-url",
            help="OpenAI-compatible server for openai: annotators (ends in /v1; "
            "vLLM, Ollama, Azure). Default: OPENAI_BASE_URL or api.openai.com.",
            rich_help_panel=_R,
        ),
    ] = None,
    anthropic_base_url: Annotated[
        str | None,
        typer.Option(
            "--anthropic-base-url",
            help="API root for anthropic: annotators (no /v1). "
            "Default: ANTHROPIC_BASE_URL or api.anthropic.com.",
            rich_help_panel=_R,
        ),
    ] = None,
    cache: Annotated[
        Path | None,
        typer.Option(
            "--cache",
            help="SQLite cache of answers and batch jobs (default: OUT.cache.sqlite).",
            rich_help_panel=_R,
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            min=1,
            help="Requests in flight at once (default 8).",
            rich_help_panel=_R,
        ),
    ] = None,
    rpm: Annotated[
        float | None,
        typer.Option("--rpm", help="Requests per minute not to exceed.", rich_help_panel=_R),
    ] = None,
    tpm: Annotated[
        float | None,
        typer.Option("--tpm", help="Tokens per minute not to exceed.", rich_help_panel=_R),
    ] = None,
    batch: Annotated[
        bool,
        typer.Option(
            "--batch",
            help="Use the providers' batch APIs (half price, up to 24 h); "
            "interrupted runs resume the same jobs.",
            rich_help_panel=_R,
        ),
    ] = False,
    poll_interval: Annotated[
        float | None,
        typer.Option(
            "--poll-interval", help="Seconds between batch polls (default 30).", rich_help_panel=_R
        ),
    ] = None,
    max_wait: Annotated[
        float | None,
        typer.Option(
            "--max-wait",
            help="Stop waiting for batch jobs after this many seconds (run again to resume).",
            rich_help_panel=_R,
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Make no call and write nothing; print one fully rendered "
            "request per provider (stdout), and to stderr how many answers are already cached, "
            "how many requests are left to make, their estimated tokens (in / out: the "
            "provider's tokenizer where one works offline, else an estimate, labelled) and "
            "estimated cost per annotator and in total (at batch prices with --batch).",
            rich_help_panel=_R,
        ),
    ] = False,
    prices: Annotated[
        Path | None,
        typer.Option(
            "--prices",
            help='JSON {"model": \\[usd_per_mtok_in, usd_per_mtok_out]} over the '
            "built-in price table.",
            exists=True,
            dir_okay=False,
            rich_help_panel=_R,
        ),
    ] = None,
    reask: Annotated[
        list[str] | None,
        typer.Option(
            "--reask",
            help="Ask again the items whose cached answer is invalid (or refused), "
            "repeatable: --reask invalid --reask refused. Every other cached answer is "
            "reused, not paid again.",
            rich_help_panel=_R,
        ),
    ] = None,
    failures: Annotated[
        Path | None,
        typer.Option(
            "--failures",
            help="Where to list refused / invalid / failed items "
            "(default: OUT.failures.jsonl; empty when every item was labelled).",
            rich_help_panel=_R,
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            help="Seconds per request before it is retried (default 60).",
            rich_help_panel=_R,
        ),
    ] = None,
    max_attempts: Annotated[
        int | None,
        typer.Option(
            "--max-attempts",
            min=1,
            help="Attempts per request on transient errors (429, 5xx, timeouts; default 6).",
            rich_help_panel=_R,
        ),
    ] = None,
    progress: Annotated[
        bool,
        typer.Option(
            "--progress/--no-progress",
            help="Progress bar with rate, ETA, tokens and cost "
            "(with --batch: each job's status and counts while polling).",
            rich_help_panel=_R,
        ),
    ] = True,
    agreement: Annotated[
        bool,
        typer.Option(
            "--agreement/--no-agreement",
            help="After the run, print how the annotators agree "
            "with each other and with gold (see `guardrail-dro agreement`).",
            rich_help_panel=_R,
        ),
    ] = True,
    columns: ColumnOptions,
) -> None:
    from annotators.batch import batch_annotate_with_report
    from annotators.config import DEFAULT_CONFIG, draw_examples, load_config
    from annotators.pilot import pilot_subset
    from annotators.pricing import load_prices
    from annotators.retry import RetryPolicy
    from annotators.runner import annotate_with_report
    from annotators.specs import make_annotator
    from guardrail_dro.data.readers import read_dataset

    # --poll-interval 0 (or below) polled a running batch job as fast as the loop turned
    for flag, value in (("--rpm", rpm), ("--tpm", tpm), ("--timeout", timeout),
                        ("--poll-interval", poll_interval)):
        if value is not None and not value > 0:  # 0 fell back to the default, -1 was used
            raise ConfigError(f"{flag} must be positive, not {value}")
    if max_wait is not None and not max_wait >= 0:
        raise ConfigError(f"--max-wait must not be negative, not {max_wait} (0: submit, "
                          "poll once, and leave the jobs running)")
    cfg = load_config(config) if config is not None else DEFAULT_CONFIG
    note_ignored(batch, cfg.run.model_dump(), concurrency=concurrency, rpm=rpm, tpm=tpm,
                 poll_interval=poll_interval, max_wait=max_wait)
    schema = schema_options.label_schema() or cfg.label_schema()
    full = read_dataset(data, columns.reader_options(), schema=schema)
    for n in full.notes:
        typer.echo(f"note: {n}", err=True)
    dataset = pilot_subset(full, limit=limit, sample=sample, seed=seed)
    if len(dataset) < len(full):
        typer.echo(f"pilot: {len(dataset)} of {len(full)} items: {dataset.name}", err=True)
    examples = None
    if cfg.few_shot.draw:
        if not cfg.few_shot.draw_from:
            raise ConfigError(
                "few_shot.draw needs few_shot.draw_from: a labelled dataset "
                "other than the one being labelled"
            )
        source = read_dataset(cfg.few_shot.draw_from, schema=full.schema)
        examples = draw_examples(
            source, cfg.few_shot.draw, cfg.few_shot.seed, exclude=set(full.texts)
        )
    template = cfg.template(examples)
    run_cfg = cfg.run
    timeout = timeout or run_cfg.timeout or 60.0
    # An [[annotators]] entry's keys are make_annotator's parameters, thinking included.
    entries: list[dict[str, Any]] = (
        [{"spec": spec} for spec in annotator]
        if annotator
        else [a.model_dump() for a in cfg.annotators]
    )
    if not entries:
        raise ConfigError(
            "no annotator: pass --annotator PROVIDER:MODEL or list "
            "[[annotators]] in the --config file"
        )
    annotators = [
        make_annotator(
            base_url=base_url,
            anthropic_base_url=anthropic_base_url,
            timeout=timeout,
            need_key=not dry_run,
            **entry,
        )
        for entry in entries
    ]
    cache_path = cache or out.with_name(out.name + ".cache.sqlite")
    price_table = load_prices(prices) if prices else None
    policy = RetryPolicy(max_attempts=max_attempts or run_cfg.max_attempts or 6)
    try:
        if batch:
            run = batch_annotate_with_report(
                dataset,
                annotators,
                cache=cache_path,
                poll_interval=poll_interval or 30.0,
                max_wait=max_wait,
                policy=policy,
                prices=price_table,
                dry_run=dry_run,
                progress=progress,
                template=template,
                reask=reask or (),
            )
        else:
            run = annotate_with_report(
                dataset,
                annotators,
                cache=cache_path,
                concurrency=concurrency or run_cfg.concurrency or 8,
                rpm=rpm or run_cfg.rpm,
                tpm=tpm or run_cfg.tpm,
                dry_run=dry_run,
                policy=policy,
                prices=price_table,
                progress=progress,
                template=template,
                reask=reask or (),
            )
    except KeyboardInterrupt as exc:
        raise typer.Exit(say_stopped(exc, batch=batch, cache=cache_path)) from None
    except BatchPendingError as exc:  # not an error: exit 2 said "fix the command"
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_BATCH_PENDING) from None
    for provider, body in run.report.sample_requests.items():
        typer.echo(f"# one {provider} request, as it would be sent:")
        typer.echo(json.dumps(body, indent=2, ensure_ascii=False))
    for line in run.report.summary_lines():
        typer.echo(line, err=True)
    if dry_run:
        return
    run.dataset.save_jsonl(out)
    typer.echo(f"wrote {out} ({len(run.dataset)} items)", err=True)
    if len(dataset) < len(full):  # OUT holds the pilot only: say what comes next
        typer.echo(
            f"pilot done: the same command without --limit / --sample labels the other "
            f"{len(full) - len(dataset)} items into {out}, asking only for those",
            err=True,
        )
    fail_path = failures or out.with_name(out.name + ".failures.jsonl")
    # Written even when empty: it overwrites a stale list, and tells `agreement` that
    # nothing was refused (rather than that refusals are not known).
    run.report.write_failures(fail_path)
    if run.report.failures:
        typer.echo(
            f"{run.report.failed} item(s) not labelled (refused / invalid / error): "
            f"listed in {fail_path}",
            err=True,
        )
    if agreement and run.dataset.annotators:  # nothing labelled: nothing to compare
        from guardrail_dro.cli.agreement import print_agreement

        print_agreement(run.dataset, [f.__dict__ for f in run.report.failures], {})
    counts = run.report.outcomes.values()
    if run.report.failures and sum(c["labelled"] for c in counts) == 0:
        raise typer.Exit(EXIT_NOTHING_LABELLED)
    if sum(c["error"] for c in counts):
        raise typer.Exit(EXIT_SOME_FAILED)


EXIT_SOME_FAILED = 3
"""Exit code when some requests failed with an error (listed in the failures file)."""
EXIT_NOTHING_LABELLED = 4
"""Exit code when no item was labelled at all (every request failed)."""
EXIT_BATCH_PENDING = 5
"""Exit code when ``--max-wait`` passed with batch jobs still running (run again)."""


def register(app: typer.Typer) -> None:
    """Add the ``annotate`` command to the ``guardrail-dro`` app."""
    app.command("annotate", help=_HELP)(annotate_command)
