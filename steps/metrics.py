"""Classification metrics computed the way the competition and scikit-learn compute them."""

from __future__ import annotations

import torch


def macro_recall(confusion: torch.Tensor) -> float:
    """scikit-learn's ``recall_score(average="macro")`` from a confusion matrix (rows: true class): the mean
    over every class in the targets or the predictions, a class predicted but never true counting 0."""
    support = confusion.sum(dim=1).double()
    seen = (support > 0) | (confusion.sum(dim=0) > 0)
    if not seen.any():
        return 0.0
    recall = torch.where(support > 0, confusion.diag().double() / support.clamp(min=1), torch.zeros_like(support))
    return float(recall[seen].mean())
