"""Build the bundled background-safe text sets (guardrail_dro/data/bundled/).

- ``convabuse-background``: the ConvAbuse USER turns that every annotator who rated
  them called not abusive (``is_abuse`` = 1 for all of them; ambiguous (0) counts
  against), with the chat widget's emoji markup decoded and turns with no letter
  dropped.
- ``everyday-requests``: ``scripts/data/everyday_requests.txt``, ordinary requests to
  a chat assistant written by hand for this project (see its README).
- ``assistant-replies``: ``scripts/data/assistant_replies.txt``, ordinary replies of a
  chat assistant written for this project (the output rail's side; see its README).
- ``harmful-requests``: ``scripts/data/harmful_requests.txt``, requests to an assistant
  that are harmful by construction, across a standard hazard taxonomy (trained as
  'not safe' with ``--background-harmful``; see its README).
- ``harmful-replies``: ``scripts/data/harmful_replies.txt``, assistant replies that
  comply with harm (the output rail's harmful side; 'not safe'; see its README).

All are de-duplicated by normalised text and split by a hash of that text (1 in 5
held out), so the split is deterministic and no text is on both sides. Run from the
repository root::

    python scripts/build_background.py ../shared/datasets/convabuse
"""

from __future__ import annotations

import csv
import hashlib
import io
import lzma
import re
import sys
from pathlib import Path

BUNDLED = Path("guardrail_dro/data/bundled")
RATINGS = ("1", "0", "-1", "-2", "-3")
_EMOJI = re.compile(r"<span class='emoji-bytes' data-emoji-bytes='\[([0-9, ]+)\]'></span>")


def _clean(text: str) -> str:
    """One line, and the chat widget's emoji markup back to the emoji it encodes."""
    text = _EMOJI.sub(
        lambda m: bytes(int(b) for b in m[1].split(",")).decode("utf-8", "replace"), text
    )
    return " ".join(text.split())


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _ratings(row: dict[str, str]) -> list[str]:
    """The is_abuse rating of each annotator who rated the turn."""
    out = []
    for k in range(1, 9):
        cols = (row.get(f"Annotator{k}_is_abuse.{r}") or "0" for r in RATINGS)
        hot = [r for r, v in zip(RATINGS, cols, strict=True) if v not in ("", "0")]
        if hot:
            out.append(hot[0])
    return out


def _write(name: str, header: list[str], records: dict[str, list[str]]) -> None:
    """Split ``records`` (normalised text -> row) by hash and write the xz CSVs."""
    parts: dict[str, list[list[str]]] = {"train": [], "heldout": []}
    for key, rec in sorted(records.items()):
        h = int(hashlib.sha256(key.encode()).hexdigest(), 16)
        parts["heldout" if h % 5 == 0 else "train"].append(rec)
    folder = BUNDLED / name
    folder.mkdir(parents=True, exist_ok=True)
    for split, recs in parts.items():
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        w.writerows(recs)
        data = lzma.compress(buf.getvalue().encode(), preset=9 | lzma.PRESET_EXTREME)
        (folder / f"{split}.csv.xz").write_bytes(data)
        print(f"{name}/{split}.csv.xz: {len(recs)} texts")


def convabuse(src: Path) -> None:
    seen: dict[str, list[str]] = {}
    for split in ("train", "valid", "test"):
        with open(src / f"{split}.csv", newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                text = _clean(row["user"] or "")
                r = _ratings(row)
                if not r or any(x != "1" for x in r) or not re.search(r"[A-Za-z]", text):
                    continue
                seen.setdefault(_norm(text), [text, row["example_id"], split, row["bot"]])
    _write("convabuse-background", ["text", "example_id", "convabuse_split", "bot"], seen)


def written(src: Path, name: str) -> None:
    """A text file written for the project, one text per line."""
    lines = [_clean(t) for t in src.read_text(encoding="utf-8").splitlines()]
    seen = {_norm(t): [t] for t in lines if t}
    _write(name, ["text"], seen)


if __name__ == "__main__":
    convabuse(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/datasets/convabuse"))
    written(Path("scripts/data/everyday_requests.txt"), "everyday-requests")
    written(Path("scripts/data/assistant_replies.txt"), "assistant-replies")
    written(Path("scripts/data/harmful_requests.txt"), "harmful-requests")
    written(Path("scripts/data/harmful_replies.txt"), "harmful-replies")
