import numpy as np
import pytest

from guardrail_dro.train.metrics import compute_metrics, macro_f1


def test_group_and_binary_metrics_by_hand() -> None:
    # classes: 0 toxic-a, 1 toxic-b, 2 safe
    y = np.array([0, 0, 1, 2, 2, 2])
    p = np.array([0, 1, 1, 2, 0, 2])
    g = np.array([0, 0, 0, 1, 1, -1])
    m = compute_metrics(
        y, p, num_classes=3, groups=g, group_names=["a", "b"], safe_mask=[False, False, True]
    )
    assert m.accuracy == pytest.approx(4 / 6)
    assert m.group_accuracy == {"a": pytest.approx(2 / 3), "b": pytest.approx(1 / 2)}
    assert m.group_mean_accuracy == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert m.worst_group == "b" and m.worst_group_accuracy == pytest.approx(0.5)
    # binary: true toxic = items 0,1,2; predicted toxic = 0,1,2,4
    assert m.toxic_recall == pytest.approx(1.0)
    assert m.toxic_precision == pytest.approx(3 / 4)
    assert m.toxic_fpr == pytest.approx(1 / 3)


def test_no_safe_classes_means_no_binary_metrics() -> None:
    m = compute_metrics(np.array([0, 1]), np.array([0, 1]), num_classes=2)
    assert m.toxic_recall is None and m.worst_group_accuracy is None


def test_macro_f1_perfect_and_worst() -> None:
    y = np.array([0, 1, 2])
    assert macro_f1(y, y, 3) == 1.0
    assert macro_f1(y, np.array([1, 2, 0]), 3) == 0.0


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="shape"):
        compute_metrics(np.array([0]), np.array([0, 1]), num_classes=2)


def test_headline_names_metrics_fields_in_table_order() -> None:
    from guardrail_dro.train.metrics import HEADLINE, WORST_GROUP_ACCURACY, Metrics

    assert set(HEADLINE) <= set(Metrics.model_fields) and WORST_GROUP_ACCURACY in HEADLINE
    m = compute_metrics(np.array([0, 1]), np.array([0, 1]), num_classes=2)
    assert tuple(m.headline()) == HEADLINE


def test_toxic_auc_ranks_one_minus_p_safe_of_toxic_against_safe_gold() -> None:
    from guardrail_dro.data.items import AnnotatedDataset, Item
    from guardrail_dro.data.schema import LabelSchema
    from guardrail_dro.train.metrics import toxic_auc

    schema = LabelSchema(classes=("toxic-a", "toxic-b", "safe"), safe=("safe",))
    golds = ["toxic-a", "safe", "toxic-b", "safe"]
    data = AnnotatedDataset(
        [Item(item_id=str(i), text=f"t{i}", gold=g) for i, g in enumerate(golds)], schema
    )
    # P(safe) per item: the two toxic items lowest, except that item 2 ties item 3.
    proba = np.array([[0.9, 0, 0.1], [0, 0.2, 0.8], [0.3, 0.3, 0.4], [0.6, 0, 0.4]])
    # toxic {0, 2} vs safe {1, 3}: pairs (0,1) (0,3) (2,1) won, (2,3) tied: 3.5 / 4.
    assert toxic_auc(data, proba) == pytest.approx(3.5 / 4)
    only_safe = data.subset([1, 3])
    assert toxic_auc(only_safe, proba[[1, 3]]) is None
