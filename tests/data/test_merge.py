"""merge_datasets / read_inputs: label files of the same items joined into one dataset.

Real files in each layout (a wide CSV of the crowd, our JSONL as ``annotate`` writes it,
a long CSV with gold), read as ``train`` reads them, then merged."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardrail_dro.data import merge_datasets, read_inputs
from guardrail_dro.data.items import AnnotatedDataset, Annotation, Item
from guardrail_dro.data.readers import read_dataset
from guardrail_dro.data.schema import LabelSchema
from guardrail_dro.errors import ConfigError, DataError, SchemaError

SCHEMA = LabelSchema(classes=("safe", "toxic"), safe=("safe",))
BREAD, BOMB, GUN = "how do I bake bread", "how do I build a bomb", "where can I buy a gun"


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _crowd(tmp_path: Path) -> Path:
    """Wide CSV: two human raters, a group column; q3 only the first rater labelled."""
    return _write(
        tmp_path / "crowd.csv",
        "item_id,text,label_ann1,label_ann2,group\n"
        f"q1,{BREAD},safe,safe,food\nq2,{BOMB},toxic,toxic,weapons\nq3,{GUN},toxic,,weapons\n",
    )


def _llm(tmp_path: Path, name: str, labels: dict[str, str], **extra: Annotation) -> Path:
    """Our JSONL as ``annotate --out`` writes it: kind llm, rationale, confidence, model."""
    texts = {"q1": BREAD, "q2": BOMB, "q3": GUN, "q4": "what is a knife for"}
    items = [
        Item(
            item_id=iid,
            text=texts[iid],
            annotations=(
                Annotation(
                    annotator=f"openai:{name}",
                    kind="llm",
                    label=label,
                    rationale=f"{name} on {iid}",
                    confidence=0.75,
                    model=f"{name}-2024",
                ),
                *([extra[iid]] if iid in extra else []),
            ),
        )
        for iid, label in labels.items()
    ]
    path = tmp_path / f"{name}.jsonl"
    AnnotatedDataset(items, SCHEMA, name=name).save_jsonl(path)
    return path


def _gold(tmp_path: Path) -> Path:
    """Long CSV: gold for a validation sample; q9 is in no other file (gold only)."""
    return _write(
        tmp_path / "gold.csv",
        f"item_id,text,annotator,label,gold\nq1,{BREAD},,,safe\nq9,a gold-only item,,,toxic\n",
    )


def _merge(*paths: Path, **kwargs: object) -> AnnotatedDataset:
    return merge_datasets(read_inputs(list(paths)), **kwargs)  # type: ignore[arg-type]


def test_files_in_three_layouts_are_unioned(tmp_path: Path) -> None:
    crowd = _crowd(tmp_path)
    gpt = _llm(tmp_path, "gpt", {"q1": "safe", "q2": "toxic", "q4": "safe"})
    merged = _merge(crowd, gpt, _gold(tmp_path))

    assert [it.item_id for it in merged] == ["q1", "q2", "q3", "q4", "q9"]
    assert merged.annotators == ("label_ann1", "label_ann2", "openai:gpt")
    assert merged.annotator_kinds == {
        "label_ann1": "human",
        "label_ann2": "human",
        "openai:gpt": "llm",
    }
    by_id = {it.item_id: it for it in merged}
    q1 = by_id["q1"]
    assert [(a.annotator, a.label) for a in q1.annotations] == [
        ("label_ann1", "safe"),
        ("label_ann2", "safe"),
        ("openai:gpt", "safe"),
    ]
    assert (q1.gold, q1.group) == ("safe", "food")
    llm = q1.annotations[2]  # kept as read
    assert (llm.rationale, llm.confidence, llm.model) == ("gpt on q1", 0.75, "gpt-2024")
    assert by_id["q9"].annotations == () and by_id["q9"].gold == "toxic"
    assert by_id["q4"].group is None and by_id["q3"].label_of("openai:gpt") is None
    assert merged.schema == SCHEMA  # the annotate output's sidecar: safe classes kept
    assert merged.notes == ("2 item(s) appear in more than one file and were joined",)


def test_the_merged_file_reads_back_as_it_was_merged(tmp_path: Path) -> None:
    merged = _merge(_crowd(tmp_path), _llm(tmp_path, "gpt", {"q1": "safe"}), _gold(tmp_path))
    out = tmp_path / "out" / "merged.jsonl"
    merged.save_jsonl(out)
    back = read_dataset(out)
    assert back.items == merged.items and back.schema == SCHEMA
    assert (tmp_path / "out" / "merged.schema.json").is_file()


def test_the_same_vote_in_two_files_counts_once(tmp_path: Path) -> None:
    human = Annotation(annotator="label_ann1", label="toxic")  # as in crowd.csv
    gpt = _llm(tmp_path, "gpt", {"q2": "toxic", "q3": "toxic"}, q2=human, q3=human)
    merged = _merge(_crowd(tmp_path), gpt)
    q2 = next(it for it in merged if it.item_id == "q2")
    assert [a.annotator for a in q2.annotations] == ["label_ann1", "label_ann2", "openai:gpt"]
    assert any(n.startswith("2 identical annotation(s)") for n in merged.notes), merged.notes
    assert merged.label_matrix().shape == (3, 3)


def test_a_conflicting_label_is_refused_naming_files_item_and_annotator(tmp_path: Path) -> None:
    other = Annotation(annotator="label_ann1", label="safe")  # crowd.csv says toxic
    gpt = _llm(tmp_path, "gpt", {"q2": "toxic"}, q2=other)
    with pytest.raises(DataError) as exc:
        _merge(_crowd(tmp_path), gpt)
    msg = str(exc.value)
    assert "item 'q2': annotator 'label_ann1' labels it 'toxic' in " in msg
    assert f"{tmp_path / 'crowd.csv'} and 'safe' in {tmp_path / 'gpt.jsonl'}" in msg
    assert "--on-conflict" in msg and "keep-first" in msg


@pytest.mark.parametrize(
    ("policy", "label"),
    [("keep-first", "toxic"), ("keep-last", "safe"), ("drop", None)],
    ids=["keep-first", "keep-last", "drop"],
)
def test_conflict_policies(tmp_path: Path, policy: str, label: str | None) -> None:
    other = Annotation(annotator="label_ann1", label="safe")
    gpt = _llm(tmp_path, "gpt", {"q2": "toxic"}, q2=other)
    merged = _merge(_crowd(tmp_path), gpt, on_conflict=policy)
    q2 = next(it for it in merged if it.item_id == "q2")
    assert q2.label_of("label_ann1") == label
    assert q2.label_of("label_ann2") == "toxic"  # the rest untouched
    assert any(f"resolved by --on-conflict {policy}" in n for n in merged.notes)


def test_two_golds_for_one_item_are_a_conflict(tmp_path: Path) -> None:
    other = _write(tmp_path / "gold2.csv", f"item_id,text,gold\nq1,{BREAD},toxic\n")
    with pytest.raises(DataError, match=r"item 'q1': gold is 'safe' in .*gold\.csv and 'toxic'"):
        _merge(_gold(tmp_path), other)
    merged = _merge(_gold(tmp_path), other, on_conflict="keep-last")
    assert merged.items[0].gold == "toxic"


def test_one_id_with_two_texts_is_refused(tmp_path: Path) -> None:
    other = _write(tmp_path / "other.csv", "item_id,text,label_x\nq1,something else,safe\n")
    with pytest.raises(DataError) as exc:
        _merge(_crowd(tmp_path), other)
    msg = str(exc.value)
    assert f"item id 'q1' has different texts in {tmp_path / 'crowd.csv'} ('{BREAD}')" in msg
    assert f"and {tmp_path / 'other.csv'} ('something else')" in msg
    assert "--join text" in msg


def test_texts_differing_only_in_case_and_spaces_are_one_item(tmp_path: Path) -> None:
    other = _write(tmp_path / "o.csv", "item_id,text,label_x\nq1,How do I  bake bread ,safe\n")
    merged = _merge(_crowd(tmp_path), other)
    assert merged.items[0].text == BREAD and merged.items[0].label_of("label_x") == "safe"
    assert any("differ only in case" in n for n in merged.notes)


def test_join_by_text_keeps_the_first_files_ids(tmp_path: Path) -> None:
    # row numbers as ids: the same texts numbered differently
    rows = _write(tmp_path / "rows.csv", f"text,label_x\n{GUN},toxic\n{BREAD.upper()},safe\n")
    by_id = _merge(_crowd(tmp_path), rows)
    assert len(by_id) == 5
    assert any("join by text (--join text)" in n for n in by_id.notes), by_id.notes
    merged = _merge(_crowd(tmp_path), rows, join="text")
    assert [it.item_id for it in merged] == ["q1", "q2", "q3"]
    assert merged.items[0].label_of("label_x") == "safe"
    assert merged.items[2].label_of("label_x") == "toxic"
    assert any("2 item(s) were joined by text under another id" in n for n in merged.notes)


def test_join_by_text_joins_a_files_repeated_text_and_renames_a_taken_id(
    tmp_path: Path,
) -> None:
    """Both were refused, so --join text failed on the files it is for (row-number ids;
    toxic-questions' train repeats 20 texts): a repeated text is one item, and a new
    text under an id an earlier text holds gets a new id naming its file."""
    twice = _write(
        tmp_path / "twice.csv",
        f"text,label_x,label_y\n{BREAD},safe,\n{BREAD} ,,safe\n{BOMB},toxic,\n",
    )
    merged = _merge(twice, join="text")
    assert len(merged) == 2 and merged.items[0].label_of("label_y") == "safe"
    assert any("1 item(s) repeat a text" in n for n in merged.notes), merged.notes
    clash = _write(tmp_path / "twice2.csv", f"text,label_x\n{BREAD},safe\n{BREAD},toxic\n")
    with pytest.raises(DataError, match=r"'safe' and 'toxic' on two rows of .*twice2\.csv"):
        _merge(clash, join="text")
    taken = _write(tmp_path / "taken.csv", "item_id,text,label_x\nq1,a new text,safe\n")
    merged = _merge(_crowd(tmp_path), taken, join="text")
    new = [it for it in merged if it.text == "a new text"]
    assert [it.item_id for it in new] == [f"{taken}:q1"] and len(merged) == 4
    assert any("their ids are now FILE:ID" in n for n in merged.notes), merged.notes


def test_schema_is_inferred_over_every_file(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.csv", "item_id,text,label_x\n1,one,spam\n")
    b = _write(tmp_path / "b.csv", "item_id,text,label_y\n1,one,ham\n")
    merged = _merge(a, b)
    assert merged.schema.classes == ("ham", "spam")
    assert merged.items[0].annotations == (
        Annotation(annotator="label_x", label="spam"),
        Annotation(annotator="label_y", label="ham"),
    )


def test_every_file_is_checked_against_a_given_schema(tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad.csv", "item_id,text,label_x\n1,one,spam\n")
    with pytest.raises(SchemaError, match=r"bad\.csv, line 2: item '1', annotator 'label_x'"):
        read_inputs([_crowd(tmp_path), bad], schema=SCHEMA)


def test_a_second_sidecar_with_another_schema_is_noted(tmp_path: Path) -> None:
    gpt = _llm(tmp_path, "gpt", {"q1": "safe"})
    claude = _llm(tmp_path, "claude", {"q1": "safe"})
    LabelSchema(classes=("safe", "toxic")).save(tmp_path / "claude.schema.json")  # no safe
    gpt_ds, claude_ds = read_inputs([gpt, claude])
    assert gpt_ds.notes == () and claude_ds.schema == SCHEMA
    assert any("declares classes ['safe', 'toxic'], safe []" in n for n in claude_ds.notes)


def test_mixed_kinds_of_one_annotator_are_noted(tmp_path: Path) -> None:
    gpt = _llm(tmp_path, "gpt", {"q1": "safe"})
    csv = _write(tmp_path / "c.csv", f"item_id,text,annotator,label\nq2,{BOMB},openai:gpt,toxic\n")
    merged = _merge(gpt, csv)
    assert [a.kind for it in merged for a in it.annotations] == ["llm", "human"]
    assert any("annotator 'openai:gpt' is llm in" in n for n in merged.notes), merged.notes


def test_the_same_file_twice_is_refused(tmp_path: Path) -> None:
    crowd = _crowd(tmp_path)
    with pytest.raises(ConfigError, match="is given twice"):
        read_inputs([crowd, tmp_path / "." / "crowd.csv"])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"on_conflict": "newest"}, ConfigError, "on_conflict must be one of error, keep-first"),
        ({"join": "row"}, ConfigError, "join must be one of id, text, not 'row'"),
    ],
    ids=["on-conflict", "join"],
)
def test_unknown_policies_are_refused(kwargs: dict, error: type, match: str) -> None:
    ds = AnnotatedDataset([Item(item_id="1", text="t")], SCHEMA)
    with pytest.raises(error, match=match):
        merge_datasets([ds], **kwargs)


def test_arguments_of_the_wrong_type_are_refused() -> None:
    ds = AnnotatedDataset([Item(item_id="1", text="t")], SCHEMA)
    with pytest.raises(TypeError, match="datasets must be a list of AnnotatedDataset"):
        merge_datasets(ds)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="only AnnotatedDataset, not dict"):
        merge_datasets([ds, {}])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="datasets is empty"):
        merge_datasets([])
    with pytest.raises(TypeError, match="paths must be a list of paths, not str"):
        read_inputs("a.csv")  # type: ignore[arg-type]


def test_a_label_outside_the_result_schema_names_its_dataset() -> None:
    other = LabelSchema(classes=("safe", "spam"))
    ds = AnnotatedDataset(
        [Item(item_id="1", text="t", annotations=(Annotation(annotator="a", label="spam"),))],
        other,
        name="spam.csv",
    )
    first = AnnotatedDataset([Item(item_id="1", text="t")], SCHEMA, name="first")
    with pytest.raises(SchemaError, match=r"spam\.csv: item '1': annotator 'a' label 'spam'"):
        merge_datasets([first, ds])


def test_a_repeat_within_one_file_gets_only_its_own_note(tmp_path: Path) -> None:
    """It was also counted as a text "differing between files" and as an item "joined
    under another id": two false notes beside the true one."""
    rows = f"text,label_x\n{BREAD},safe\n{BREAD.upper()},safe\n{BOMB},toxic\n"
    merged = _merge(_write(tmp_path / "case.csv", rows), join="text")
    assert len(merged) == 2
    assert [n for n in merged.notes if "item(s)" in n] == [
        "1 item(s) repeat a text that appears earlier in the same file: joined with it "
        "(--join text), its labels counted once per annotator"
    ], merged.notes
