"""The paper's figures as PNG files, with matplotlib's non-interactive Agg backend.

* `plot_decision_planes`: figure 3, decision regions of the logit classifier and of the
  nuisance classifier on 2D planes (see `analysis.planes`), with the circles |x| = R1, R2.
* `plot_metamer_grid`: figure 4, each column a triple (logit source a, metamer
  F^-1(z_s(a), z_n(b)), nuisance source b); several panels (e.g. CE and iCE) side by side.
* `plot_interpolations`: figure 6, each column z_s(a) fixed while z_n moves from z_n(a) (top)
  to z_n(b) (the metamer), with the target b in the last row; panels side by side.

Images (H, W, 1) are drawn in grey on [0, 1]; (H, W, 3) in colour clipped to [0, 1]; flat
vectors (spheres) as a one-row heat map titled with their norm |x|, the quantity the spheres'
oracle reads.
"""

import os

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from invertible_keras import run_dir  # noqa: E402

_CELL = 1.1  # inches per image cell


def plot_decision_planes(planes, path, radii=None, title=None):
    """Figure 3: one row per plane, columns logit classifier | nuisance classifier.

    Args:
        planes: list of `analysis.planes.Plane`.
        path: PNG file to write.
        radii: `(R1, R2)` to draw the spheres' circles (and the oracle's boundary at
            (R1 + R2) / 2, dotted); None draws none.
        title: figure title.

    Returns:
        `path`.
    """
    fig, axes = plt.subplots(len(planes), 2, figsize=(8, 4 * len(planes)), squeeze=False)
    cmap = matplotlib.colors.ListedColormap(["#9ecae1", "#fdae6b", "#a1d99b", "#bcbddc", "#fc9272",
                                             "#d9d9d9", "#fdd0a2", "#c7e9c0", "#dadaeb", "#fcbba1"])
    for row, plane in zip(axes, planes):
        for ax, labels, who in ((row[0], plane.logit_labels, "logit classifier D"),
                                (row[1], plane.nuisance_labels, "nuisance classifier")):
            ax.pcolormesh(plane.coordinates, plane.coordinates, labels, cmap=cmap, vmin=0, vmax=cmap.N - 1,
                          shading="nearest")
            if radii is not None:
                for radius, style in ((radii[0], "-"), (radii[1], "-"), (0.5 * (radii[0] + radii[1]), ":")):
                    ax.add_patch(plt.Circle((0.0, 0.0), radius, fill=False, color="k", linestyle=style, lw=1))
            for name, (alpha, beta) in plane.landmarks.items():
                ax.plot(alpha, beta, "k*", markersize=10)
                ax.annotate(name, (alpha, beta), textcoords="offset points", xytext=(5, 5))
            ax.set_aspect("equal")
            ax.set_title(f"{who}\n{plane.title}", fontsize=8)
    handles = [matplotlib.patches.Patch(color=cmap(k), label=f"class {k}")
               for k in range(int(max(np.max(p.logit_labels) for p in planes)) + 1)]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles))
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_metamer_grid(panels, path, title=None):
    """Figure 4: rows logit source, metamer, nuisance source; one column per pair.

    Args:
        panels: list of `(panel_title, x_a, x_met, x_b)`, arrays of n examples each; the
            panels are drawn side by side (e.g. CE and iCE on the same pairs).
        path: PNG file to write.
        title: figure title.

    Returns:
        `path`.
    """
    rows = ("logit source a", "metamer", "nuisance source b")
    return _panels(panels, path, title,
                   lambda panel: [list(panel[1]), list(panel[2]), list(panel[3])], rows)


def plot_interpolations(panels, path, title=None):
    """Figure 6: z_s(a) fixed, z_n from z_n(a) (top) to z_n(b) (metamer), target b last.

    Args:
        panels: list of `(panel_title, paths, x_b)`: `paths` of shape `(n, steps, ...)` from
            `metamers.interpolate`, `x_b` the n targets; panels side by side.
        path: PNG file to write.
        title: figure title.

    Returns:
        `path`.
    """
    steps = int(np.shape(panels[0][1])[1])
    rows = [f"t={t:.2f}" for t in np.linspace(0.0, 1.0, steps)] + ["target b"]
    return _panels(panels, path, title,
                   lambda panel: [list(panel[1][:, t]) for t in range(steps)] + [list(panel[2])], rows)


def _panels(panels, path, title, rows_of, row_names):
    """Draws panels of image rows side by side; `rows_of(panel)` lists rows of images."""
    grids = [rows_of(panel) for panel in panels]
    num_rows, num_cols = len(row_names), max(len(grid[0]) for grid in grids)
    fig = plt.figure(figsize=(_CELL * num_cols * len(panels) + 1.0, _CELL * num_rows + 1.0))
    subfigs = np.atleast_1d(fig.subfigures(1, len(panels)))
    for subfig, panel, grid in zip(subfigs, panels, grids):
        axes = subfig.subplots(num_rows, num_cols, squeeze=False)
        for r, images in enumerate(grid):
            for c in range(num_cols):
                ax = axes[r, c]
                if c < len(images):
                    _show(ax, images[c])
                else:
                    ax.axis("off")
                ax.set_xticks([])
                ax.set_yticks([])
            axes[r, 0].set_ylabel(row_names[r], fontsize=7)
        subfig.suptitle(panel[0])
    if title:
        fig.suptitle(title, y=1.02)
    return _save(fig, path)


def _show(ax, x):
    x = np.asarray(x)
    if x.ndim == 1:  # a vector: one-row heat map, titled with the norm the spheres' oracle reads
        bound = float(np.max(np.abs(x))) or 1.0
        ax.imshow(x[None, :], aspect="auto", cmap="coolwarm", vmin=-bound, vmax=bound)
        ax.set_title(f"|x|={np.linalg.norm(x):.2f}", fontsize=6)
    elif x.ndim == 3 and x.shape[-1] == 1:
        ax.imshow(x[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
    elif x.ndim == 3 and x.shape[-1] == 3:
        ax.imshow(np.clip(x, 0.0, 1.0))
    else:
        raise ValueError(f"Can draw vectors (d,) and images (H, W, 1 or 3). Received shape {x.shape}.")


def _save(fig, path):
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        with run_dir.atomic_path(path) as tmp:  # a reader never sees half a PNG
            fig.savefig(tmp, dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path
