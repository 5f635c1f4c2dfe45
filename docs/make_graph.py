"""Draw the network's computational graph into docs/images/network.png.

Run from the repository root: ``python docs/make_graph.py`` (needs matplotlib, the
``plot`` extra). Layers are boxes labelled with the equations of docs/derivation.md;
the shared branch y_hat_A, where the gradients of the two losses add (51), is
highlighted, and the two gradient paths into it are drawn as dashed arrows.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

OUT = Path(__file__).resolve().parent / "images" / "network.png"

LAYER = {"facecolor": "#e8eef7", "edgecolor": "#34507a"}
VALUE = {"facecolor": "white", "edgecolor": "#777777"}
LOSS = {"facecolor": "#fdf0dc", "edgecolor": "#a8650f"}
SHARED = {"facecolor": "#ffe1e1", "edgecolor": "#c0392b"}
GRADIENT = "#c0392b"

# name: (x, y, label, style); coordinates in data units, boxes centred there.
NODES: dict[str, tuple[float, float, str, dict[str, str]]] = {
    "X": (0.0, 2.0, "$X$\n(m, n_in)", VALUE),
    "fc_1a": (1.7, 3.2, "Linear\n$\\theta_{1A}, b_{1A}$\n(34)", LAYER),
    "sine": (3.3, 3.2, "sin\n(35)", LAYER),
    "dropout": (4.9, 3.2, "Dropout\nmask $M$\n(36)", LAYER),
    "fc_2a": (6.5, 3.2, "Linear\n$\\theta_{2A}, b_{2A}$\n(37)", LAYER),
    "y_a": (8.2, 3.2, "$\\hat y_A$\nshared branch\n(51)", SHARED),
    "loss_a": (10.1, 3.2, "$L_A$ (MSE)\ntarget $y_A$\n(44)", LOSS),
    "fc_1b": (1.7, 0.8, "Linear\n$\\theta_{1B}$, no bias\n(38)", LAYER),
    "bn": (3.3, 0.8, "MeanCenterBN\n$b_{1B}$\n(39)", LAYER),
    "relu": (4.9, 0.8, "ReLU\n(40)", LAYER),
    "a_bn": (6.5, 0.8, "$a_{BN}$", VALUE),
    "sum": (8.2, 0.8, "$h = \\hat y_A + a_{BN}$\n(41)", LAYER),
    "fc_2b": (10.1, 0.8, "Linear\n$\\theta_{2B}, b_{2B}$\n(42)", LAYER),
    "softmax": (11.7, 0.8, "softmax\n$\\hat y_B$\n(43)", LAYER),
    "loss_b": (13.3, 0.8, "$L_B$ (CE)\ntarget $y_B$\n(45)", LOSS),
    "total": (13.3, 3.2, "$L = w_A L_A$\n$+\\ w_B L_B$\n(46)", LOSS),
}
EDGES = [
    ("X", "fc_1a"), ("fc_1a", "sine"), ("sine", "dropout"), ("dropout", "fc_2a"),
    ("fc_2a", "y_a"), ("y_a", "loss_a"), ("loss_a", "total"),
    ("X", "fc_1b"), ("fc_1b", "bn"), ("bn", "relu"), ("relu", "a_bn"),
    ("a_bn", "sum"), ("y_a", "sum"), ("sum", "fc_2b"), ("fc_2b", "softmax"),
    ("softmax", "loss_b"), ("loss_b", "total"),
]  # fmt: skip
HALF_WIDTH, HALF_HEIGHT = 0.68, 0.42


def _box(ax: Axes, x: float, y: float, label: str, style: dict[str, str]) -> None:
    width = 2 * (HALF_WIDTH + (0.15 if style is SHARED else 0.0))
    ax.add_patch(
        FancyBboxPatch(
            (x - width / 2, y - HALF_HEIGHT),
            width,
            2 * HALF_HEIGHT,
            boxstyle="round,pad=0.04,rounding_size=0.08",
            linewidth=2.4 if style is SHARED else 1.2,
            zorder=2,
            **style,
        )
    )
    ax.text(x, y, label, ha="center", va="center", fontsize=8.5, zorder=3)


def _half_width(name: str) -> float:
    return HALF_WIDTH + (0.15 if NODES[name][3] is SHARED else 0.0)


def _edge_point(name: str, towards: tuple[float, float]) -> tuple[float, float]:
    """Where the line from the centre of box `name` to `towards` leaves the box."""
    x, y = NODES[name][:2]
    dx, dy = towards[0] - x, towards[1] - y
    t = min(
        _half_width(name) / abs(dx) if dx else float("inf"),
        HALF_HEIGHT / abs(dy) if dy else float("inf"),
    )
    return x + t * dx, y + t * dy


def _arrow(ax: Axes, start: str, end: str, **style: object) -> None:
    centre_start, centre_end = NODES[start][:2], NODES[end][:2]
    ax.annotate(
        "",
        xy=_edge_point(end, centre_start),
        xytext=_edge_point(start, centre_end),
        zorder=1,
        arrowprops={
            "arrowstyle": "-|>",
            "color": "#333333",
            "shrinkA": 3,
            "shrinkB": 3,
            "linewidth": 1.1,
            **style,
        },
    )


def draw(path: Path = OUT) -> Path:
    """Draw the graph and save it to `path`; return the path."""
    fig, ax = plt.subplots(figsize=(13, 5.2))
    for start, end in EDGES:
        _arrow(ax, start, end)
    for x, y, label, style in NODES.values():
        _box(ax, x, y, label, style)

    # The two gradients arriving at y_hat_A, which (51) adds: from L_A, arcing over
    # the forward arrow, and from h, beside the forward arrow.
    gradient = {"arrowstyle": "-|>", "color": GRADIENT, "linestyle": "--"}
    x_a, y_a = NODES["y_a"][:2]
    x_loss, _ = NODES["loss_a"][:2]
    ax.annotate(
        "",
        xy=(x_a + 0.35, y_a + HALF_HEIGHT + 0.05),
        xytext=(x_loss - 0.2, y_a + HALF_HEIGHT + 0.05),
        arrowprops={**gradient, "connectionstyle": "arc3,rad=0.5"},
    )
    x_sum, y_sum = NODES["sum"][:2]
    ax.annotate(
        "",
        xy=(x_a + 0.3, y_a - HALF_HEIGHT - 0.05),
        xytext=(x_sum + 0.3, y_sum + HALF_HEIGHT + 0.05),
        arrowprops={**gradient, "connectionstyle": "arc3,rad=0.25"},
    )
    ax.text(
        8.2,
        4.6,
        "backward: $d\\hat y_A = w_A\\,(\\hat y_A - y_A)/m\\ +\\ dh$   (51)\n"
        "task A's own term plus task B's term through $\\theta_{2B}$ (50)",
        ha="center",
        va="center",
        fontsize=9.5,
        color=GRADIENT,
    )
    ax.text(-0.6, 3.95, "task A (regression)", fontsize=10, weight="bold")
    ax.text(-0.6, -0.05, "task B (classification)", fontsize=10, weight="bold")
    ax.text(
        13.9,
        -0.15,
        "solid: forward; dashed: the gradients summed at $\\hat y_A$",
        ha="right",
        fontsize=8,
        color="#555555",
    )

    ax.set_xlim(-0.8, 14.1)
    ax.set_ylim(-0.35, 5.0)
    ax.set_aspect("equal")
    ax.axis("off")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return path


if __name__ == "__main__":
    draw()
