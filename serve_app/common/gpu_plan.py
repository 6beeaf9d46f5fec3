"""The GPU plan: how deployments share cards, and the invariant that makes any packing safe.

Ray's `num_gpus` fractions are bookkeeping: they decide which replicas Ray puts on one
card, not how much memory each one takes. vLLM preallocates its pool whatever Ray says,
and PyTorch / CTranslate2 take what they take. So each GPU deployment also declares a
memory budget (what one replica really takes at its peak), and the plan holds when

    budget + CUDA context  <=  num_gpus x card memory        (for every GPU deployment)

Then any set of replicas Ray packs onto a card (fractions summing to <= 1) fits in its
memory. The builder refuses a plan that breaks this; replicas re-check it on the real card.

No heavy imports here: the config validator and the `plan` command use this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Ray accounts fractional GPUs in units of 1/10000; packing in the same integer units
# avoids 0.45 + 0.45 + 0.1 landing a hair above 1.0.
_RAY_GPU_UNITS = 10_000
_CARD = re.compile(r"^(?P<name>.*?)-?(?P<gb>\d+(?:\.\d+)?)\s*GB$", re.IGNORECASE)


def card_memory_gb(card: str) -> float:
    """Memory of a card spec `<name>-<N>GB` such as H100-80GB, L4-24GB or H200-141GB."""
    match = _CARD.match(card.strip())
    if match is None or float(match["gb"]) <= 0:
        raise ValueError(f"GPU {card!r} must be written <name>-<memory>GB, e.g. H100-80GB or L4-24GB")
    return float(match["gb"])


def budget_violation(
    deployment: str, num_gpus: float, budget_gb: float, context_gb: float, card_gb: float, card: str
) -> str | None:
    """Why one replica's budget does not fit its fraction of the card, or None when it does."""
    share_gb = num_gpus * card_gb
    if budget_gb + context_gb <= share_gb + 1e-9:
        return None
    return (
        f"{deployment}: memory budget {budget_gb:g} GB + {context_gb:g} GB CUDA context = "
        f"{budget_gb + context_gb:g} GB exceeds num_gpus {num_gpus:g} x {card_gb:g} GB ({card}) = {share_gb:g} GB; "
        f"lower the budget or raise num_gpus to at least {(budget_gb + context_gb) / card_gb:.3f}"
    )


def gpus_needed(fractions: list[float]) -> int:
    """Cards needed to hold replicas of these GPU fractions: first-fit decreasing.

    The best packing Ray can reach; its scheduler places replicas as they come, so a
    cluster may need one more card than this when replicas start in an unlucky order.
    """
    free: list[int] = []
    for units in sorted((round(f * _RAY_GPU_UNITS) for f in fractions if f > 0), reverse=True):
        for card, left in enumerate(free):
            if units <= left:
                free[card] = left - units
                break
        else:
            free.append(_RAY_GPU_UNITS - units)
    return len(free)


@dataclass(frozen=True)
class GPUClaim:
    """What one replica of a planned deployment may take; checked again where the replica lands."""

    deployment: str
    num_gpus: float
    budget_gb: float
    context_gb: float
    card: str
