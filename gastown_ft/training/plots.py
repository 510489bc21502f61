"""Loss curves as a PNG, for asset metadata and the model card."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def plot_loss_curves(
    train: Sequence[tuple[int, float]],
    val: Sequence[tuple[int, float]],
    path: Path,
    title: str = "LoRA training",
) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display; safe in worker processes
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    if train:
        ax.plot([s for s, _ in train], [v for _, v in train], label="train", linewidth=1)
    if val:
        ax.plot([s for s, _ in val], [v for _, v in val], label="validation", marker="o", linewidth=1.5)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (mean per token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
