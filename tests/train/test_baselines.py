"""The fixed training targets of the baselines, on tiny label matrices."""

import numpy as np
import torch

from guardrail_dro.train import baselines as B


def test_uniform_soft_targets_are_the_label_distribution() -> None:
    """Each present annotator counts once; an item nobody labelled keeps a zero row.

    (Was objectives.label_distribution, a torch twin of this function, now removed.)
    """
    labels = np.array([[0, 0, 1], [-1, 2, -1], [-1, -1, -1]])
    s = B.uniform_soft_targets(labels, 3)
    torch.testing.assert_close(
        torch.as_tensor(s), torch.tensor([[2 / 3, 1 / 3, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    )


def test_single_annotator_targets_leave_its_unlabelled_items_empty() -> None:
    labels = np.array([[0, 1], [-1, 2], [2, -1]])
    s = B.single_annotator_targets(labels, 3, column=0)
    np.testing.assert_array_equal(s, [[1, 0, 0], [0, 0, 0], [0, 0, 1]])


def test_majority_vote_shares_a_tie_whatever_the_label_order() -> None:
    """A tie is no evidence for either class: its mass is shared, so swapping two
    classes' places in the schema swaps their targets and nothing else. (crowd-kit's
    MajorityVote broke ties by label order: every safe-vs-toxic tie of toxic-questions
    went to the last class, safe.)"""
    labels = np.array([[0, 0, 1], [0, 2, -1], [1, 2, 0], [-1, -1, -1], [-1, 2, -1]])
    mv = B.majority_vote_targets(labels, 3)
    third = 1 / 3
    expected = [[1, 0, 0], [0.5, 0, 0.5], [third, third, third], [0, 0, 0], [0, 0, 1]]
    np.testing.assert_allclose(mv, expected, rtol=1e-6)
    assert mv.dtype == np.float32
    swapped = np.where(labels == 0, 2, np.where(labels == 2, 0, labels))
    np.testing.assert_allclose(B.majority_vote_targets(swapped, 3), mv[:, ::-1], rtol=1e-6)
