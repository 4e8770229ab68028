"""``guardrail-dro distill``: a trained guard -> a smaller, faster student model directory.

A shell over ``guardrail_dro.train.distill.distill`` (torch loads inside the command).
``distill_model_dir`` reads the data the teacher's manifest names when none is given;
``export --distill K`` and ``quickstart --student K`` call it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from guardrail_dro.cli.options import ColumnOptions, takes_option_groups
from guardrail_dro.errors import ConfigError

if TYPE_CHECKING:
    from guardrail_dro.data.items import AnnotatedDataset
    from guardrail_dro.data.readers import ReaderOptions
    from guardrail_dro.train.distill import DistillConfig

__all__ = [
    "DEFAULT_LAYERS",
    "distill_command",
    "distill_model_dir",
    "distill_splits",
    "register",
]

DEFAULT_LAYERS = 2
"""The recommended student: 2 of MiniLM's 6 layers (chosen on toxic-questions valid,
README "Distilled student")."""

_HELP = (
    "Distil a trained guard (the teacher) into a smaller encoder (the student).\n\n"
    "The student keeps the teacher's embeddings and K of its transformer layers "
    "(--layer-choice spread: evenly spaced, first and last kept; first: the first K) and "
    "a copy of its head, then learns to match the teacher's class probabilities and "
    "pooled embedding (--loss both) on the teacher's training texts plus unlabelled "
    "texts (--texts; default: the background text, safe and harmful, the teacher "
    "trained with). No labels are needed; validation texts are never distilled on, they "
    "pick the epoch "
    "(best ROC AUC of the toxic score). OUT is a normal model directory whose manifest records "
    "the teacher: `guardrail-dro export --model OUT --valid ...` calibrates and gates it "
    "like any model.\n\n"
    "A 2-layer MiniLM student checks a text in about a third of the teacher's time on "
    "a CPU; on a 2-core CPU distilling it with the defaults takes about 10 minutes "
    "(toxic-questions: 23,341 texts with the word-noise copies, 3 epochs).\n\n"
    "Examples:\n\n"
    "guardrail-dro distill --model runs/model --out runs/student\n\n"
    "guardrail-dro distill --model runs/model --layers 3 --out runs/student-l3 "
    "--train toxic-questions:train --valid toxic-questions:valid --texts chats.txt"
)


def _read(path: str, opts: ReaderOptions | None, schema) -> AnnotatedDataset:
    from guardrail_dro.data.readers import read_dataset

    return read_dataset(path, opts, schema=schema)


def _teacher_manifest(teacher: Path) -> Any:
    """The teacher's ``TrainManifest``, or an error saying what ``teacher`` is instead.

    Raises:
        ArtifactError: no manifest (a guard artifact is named as one) or a broken one.
    """
    from guardrail_dro.errors import ArtifactError
    from guardrail_dro.train.modeldir import TrainManifest

    mpath = teacher / "manifest.json"
    if not mpath.is_file():
        hint = (
            ": it is a guard artifact (export's output); distill the model directory it "
            "was exported from"
            if (teacher / "guard.json").is_file()
            else " (train's --out folder has one)"
        )
        raise ArtifactError(f"{teacher} is not a trained model directory: no manifest.json{hint}")
    try:
        return TrainManifest.model_validate_json(mpath.read_text())
    except ValueError as exc:
        raise ArtifactError(f"{mpath}: not a valid manifest: {exc}") from None


def distill_model_dir(
    teacher: str | Path,
    out: str | Path,
    config: DistillConfig,
    *,
    train: str | Path | None = None,
    valid: str | Path | None = None,
    texts: Sequence[str] | None = None,
    reader: ReaderOptions | None = None,
    console: Console | None = None,
) -> Path:
    """Distil ``teacher`` into ``out`` reading the data by name or path.

    ``train`` / ``valid`` default to the splits the teacher's manifest names (a model
    trained on ``toxic-questions:train`` finds it again); ``texts`` (background-safe
    sets or files, their training part only) default to the teacher's background text.

    Raises:
        ConfigError: no training / validation data given and none named by the teacher.
    """
    from guardrail_dro.data.background import load_background
    from guardrail_dro.data.schema import LabelSchema
    from guardrail_dro.outputs import check_writable
    from guardrail_dro.train.distill import distill
    from guardrail_dro.train.modeldir import check_save_target

    say = console or Console(stderr=True, emoji=False)  # ":smile:" in a path is text
    teacher = Path(teacher)
    man = _teacher_manifest(teacher)
    _check_out(teacher, Path(out))
    _check_layers(teacher, config.layers)
    check_save_target(out)  # before minutes of distilling, not after
    check_writable(out, "--out", beside=True)
    schema = LabelSchema.load(teacher / "schema.json")
    named = dict(man.data_names)
    if man.data_hashes.get("train") and "train" not in named and man.groups:
        # Models trained before data names were recorded: the bundled split when its
        # content hash matches.
        named |= _bundled_by_hash(man.data_hashes)
    paths = {"train": train or named.get("train"), "valid": valid or named.get("valid")}
    for split, p in paths.items():
        if p is None:
            raise ConfigError(
                f"the teacher's manifest names no {split} data: pass --{split} "
                "(the split it was trained / selected on)"
            )
        given = train if split == "train" else valid
        if given is None and not _found(str(p)):
            # A path the manifest recorded as train was given it (relative to where
            # train ran): "error: data/train.csv: file not found" named neither its
            # origin nor the option that replaces it.
            raise ConfigError(
                f"the teacher's manifest names its {split} data {p}, which is not found "
                f"from {Path.cwd()}: pass --{split} (the split it was trained / selected on)"
            )
    train_ds = _read(str(paths["train"]), reader, schema)
    valid_ds = _read(str(paths["valid"]), reader, schema)
    bg = man.background
    specs = list(texts) if texts is not None else ([*bg.sources, *bg.harmful_sources] if bg else [])
    extra, held = {}, {}
    for spec in specs:  # unlabelled texts: the teacher's scores are the targets, any kind
        bg_text = load_background([spec], require_both=False, harmful=None)
        extra[spec], held[spec] = list(bg_text.train), len(bg_text.heldout)
    say.print(
        f"distilling {teacher} into {config.layers} layer(s) on {paths['train']} "
        f"({len(train_ds)} texts)"
        + (f" + {', '.join(f'{k} ({len(v)})' for k, v in extra.items())}" if extra else "")
        + f"; epochs chosen on {paths['valid']}",
        highlight=False,
        markup=False,  # paths and file names: "[v2]" is text
    )
    for spec, n in ((k, v) for k, v in held.items() if v):
        # Background text is split as train splits it: its held-out part (1 in 5 texts
        # of a file, by hash) measures a guard's false positives and is never distilled
        # on. Said, not silent: a 2-line file used to add "(0)" texts and no word why.
        say.print(
            f"note: {spec}: {n} of its {n + len(extra[spec])} texts are held out (as "
            "train holds out background text) and not distilled on",
            highlight=False,
            markup=False,
        )

    def on_epoch(row: dict) -> None:
        auc = row["toxic_auc"]
        say.print(
            f"  epoch {row['epoch']}: loss {row['loss']:.4f}, valid worst-group acc "
            f"{row['worst_group_accuracy'] or 0:.3f}, acc {row['accuracy']:.3f}"
            + (f", toxic ROC AUC {auc:.4f}" if auc is not None else ""),
            highlight=False,
        )

    student = distill(teacher, train_ds, valid_ds, config, extra_texts=extra,
                      on_epoch=on_epoch)  # fmt: skip
    student.save(out)
    rec = student.manifest.distilled_from
    assert rec is not None
    sm, tm = student.manifest.valid_metrics, man.valid_metrics
    say.print(
        f"student -> {out}: layers {rec.layers} of {rec.teacher_layers}, epoch "
        f"{rec.best_epoch} (best valid toxic ROC AUC {_num(sm.toxic_roc_auc, 4)}; teacher "
        f"{_num(tm.toxic_roc_auc, 4)}), {rec.seconds:.0f} s; valid worst-group acc "
        f"{_num(sm.worst_group_accuracy)} (teacher {_num(tm.worst_group_accuracy)})",
        highlight=False,
        markup=False,
    )
    return Path(out)


def _num(value: float | None, digits: int = 3) -> str:
    """A metric as the epoch lines print it; n/a for one a split cannot give (no groups)."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def _found(spec: str) -> bool:
    """A data file that exists, or a bundled split (``toxic-questions:train``)."""
    from guardrail_dro.data.bundled import parse_spec

    return Path(spec).exists() or parse_spec(spec) is not None


def _check_out(teacher: Path, out: Path) -> None:
    """Refuse an ``--out`` that is the teacher, inside it, or holds it.

    Why: saving a model directory replaces it whole, so a student inside the teacher
    (``--out runs/model/student``) is deleted by the next save of the teacher (train or
    distill again to ``runs/model``), and a student saved over a folder holding the
    teacher deletes the teacher.
    """
    t, o = teacher.resolve(), out.resolve()
    if o == t:
        raise ConfigError(
            f"--out {out} is the teacher's own directory: the student would replace it; "
            "pass a new folder"
        )
    if o.is_relative_to(t) or t.is_relative_to(o):
        where = "is inside the teacher's directory" if o.is_relative_to(t) else "holds the teacher"
        raise ConfigError(
            f"--out {out} {where} ({teacher}): a model directory is replaced whole when "
            "saved, so one would delete the other; pass a folder beside it"
        )


def encoder_layers(folder: Path) -> int | None:
    """Transformer layers of the encoder in ``folder`` (a model directory, v2 or v1, or a
    Hugging Face encoder folder), read from its config without loading it; None when no
    config says (``distill`` then checks once the model is loaded)."""
    import json

    for cfg in (folder / "config.json", folder / "encoder" / "config.json"):  # v2, v1
        try:
            raw = json.loads(cfg.read_text())
        except (OSError, ValueError):
            continue
        enc = raw.get("encoder", raw) if isinstance(raw, dict) else None
        total = enc.get("num_hidden_layers") if isinstance(enc, dict) else None
        return total if isinstance(total, int) else None
    return None


def _check_layers(teacher: Path, layers: int) -> None:
    """Refuse ``--layers`` above the teacher's before any data is read, naming the option
    (``distill`` would refuse it too, after reading the data, in its own words)."""
    total = encoder_layers(teacher)
    if total is not None and layers > total:
        raise ConfigError(
            f"--layers {layers}: the teacher has {total} transformer layer(s); a "
            f"student takes 1..{total}"
        )


def distill_splits(
    teacher: Path,
    out: Path,
    train: AnnotatedDataset,
    valid: AnnotatedDataset,
    background: Sequence[str],
    layers: int,
    console: Console,
) -> Path:
    """The quickstart's student: ``teacher`` distilled on the splits in memory and the
    training part of its background-safe text, saved to ``out``."""
    from guardrail_dro.data.background import load_background
    from guardrail_dro.train.distill import DistillConfig, distill

    extra = {
        s: list(load_background([s], require_both=False, harmful=None).train) for s in background
    }
    console.print(f"  distilling the guard into a {layers}-layer student", highlight=False)
    student = distill(teacher, train, valid, DistillConfig(layers=layers),
                      extra_texts=extra)  # fmt: skip
    student.save(out)
    m = student.manifest.valid_metrics
    console.print(
        f"  student -> {out}: valid worst-group acc {m.worst_group_accuracy or 0:.3f}, "
        f"acc {m.accuracy:.3f}",
        highlight=False,
        markup=False,
    )
    return out


def _bundled_by_hash(hashes: dict[str, str]) -> dict[str, str]:
    from guardrail_dro.data.bundled import load_bundled

    try:
        splits, _ = load_bundled("toxic-questions")
    except Exception:  # the bundled data is optional here: the caller asks for --train
        return {}
    found = {}
    for name, ds in splits.items():
        if hashes.get(name) == ds.content_hash():
            found[name] = f"toxic-questions:{name}"
    return found


@takes_option_groups
def distill_command(
    model: Annotated[
        Path,
        typer.Option(
            "--model", help="The teacher: a trained model directory.", exists=True, file_okay=False
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Student model directory to write.")],
    layers: Annotated[
        int, typer.Option("--layers", min=1, help="Transformer layers of the student.")
    ] = DEFAULT_LAYERS,
    train: Annotated[
        str | None,
        typer.Option(
            "--train",
            help="Texts to distil on (default: the teacher's training "
            "split, as its manifest names it).",
        ),
    ] = None,
    valid: Annotated[
        str | None,
        typer.Option(
            "--valid",
            help="Validation split with gold labels and groups: picks "
            "the epoch (default: the teacher's).",
        ),
    ] = None,
    texts: Annotated[
        list[str] | None,
        typer.Option(
            "--texts",
            help="Unlabelled texts, repeatable: a bundled "
            "background set or a .txt / .csv / .jsonl file (default: the "
            "teacher's background text, safe and harmful). As in train, 1 in 5 texts "
            "of a file (by hash) is held out and not distilled on.",
        ),
    ] = None,
    no_texts: Annotated[
        bool, typer.Option("--no-texts", help="Distil on the training texts only.")
    ] = False,
    layer_choice: Annotated[
        str, typer.Option("--layer-choice", help="spread or first.")
    ] = "spread",
    loss: Annotated[
        str, typer.Option("--loss", help="both (probabilities + embedding), kl or embed.")
    ] = "both",
    augment: Annotated[
        int | None,
        typer.Option(
            "--augment",
            min=0,
            help="Word-noise copies of each training text to distil on too (a few "
            "words dropped, two swapped): the teacher labels them, the student sees "
            "more of the space around the data (default: the library's, "
            "chosen on toxic-questions valid; 0: none).",
        ),
    ] = None,
    toxic_weight: Annotated[
        float | None,
        typer.Option(
            "--toxic-weight",
            min=0.0,
            help="Weight of an extra term matching the teacher's toxic score (what the "
            "guard thresholds; default: the library's; 0: none).",
        ),
    ] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 3,
    quant_aware_epochs: Annotated[
        int,
        typer.Option(
            "--quant-aware-epochs",
            min=0,
            help="Train the last N epochs through int8 rounding (inputs per tensor, "
            "weights per channel, as the export's fast int8) and keep the best of them: "
            "fewer decision flips when the int8 is gated. 0: none.",
        ),
    ] = 0,
    lr: Annotated[float, typer.Option("--lr")] = 2e-4,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 64,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            min=1,
            help="torch threads (default 1: fastest on a "
            "shared CPU; give the core count to use every core).",
        ),
    ] = 1,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    cache_dir: Annotated[
        Path | None, typer.Option("--cache-dir", help="Embedding cache folder.")
    ] = None,
    *,
    columns: ColumnOptions,
) -> None:
    from pydantic import ValidationError

    from guardrail_dro.train.distill import DistillConfig

    try:
        cfg = DistillConfig(
            layers=layers, layer_choice=layer_choice, loss=loss, epochs=epochs, lr=lr,
            batch_size=batch_size, seed=seed, cache_dir=cache_dir, threads=threads,
            quant_aware_epochs=quant_aware_epochs,
            **{k: v for k, v in {"augment": augment, "toxic_weight": toxic_weight}.items()
               if v is not None},
        )  # fmt: skip
    except ValidationError as exc:
        # Each field is the option of the same name: "error: layer_choice: Input should
        # be 'first' or 'spread'" named a field no user typed.
        raise _option_error(exc) from None
    distill_model_dir(
        model, out, cfg, train=train, valid=valid, texts=[] if no_texts else texts,
        reader=columns.reader_options(),
    )  # fmt: skip
    typer.echo(f"next: guardrail-dro export --model {out} --out GUARD_DIR --valid VALID")


def _option_error(exc: Any) -> typer.BadParameter:
    """A ``DistillConfig`` refusal (a pydantic ``ValidationError``) in the words of the
    option that set the field, with the value given."""
    first = exc.errors(include_url=False)[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    msg = first["msg"].removeprefix("Value error, ")
    return typer.BadParameter(
        f"{msg}, not {first['input']!r}", param_hint=f"--{field.replace('_', '-')}"
    )


def register(app: typer.Typer) -> None:
    """Add the ``distill`` command to ``app``."""
    app.command("distill", help=_HELP, no_args_is_help=True)(distill_command)
