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
