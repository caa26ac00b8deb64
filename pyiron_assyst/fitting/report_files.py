"""Files of the transferability report: the table (CSV, markdown with the verdict on top) and
the pictures.

:func:`write_report` writes ``transferability.csv``, ``transferability.md``, ``ev_curves.png``,
``parity_energy.png``, ``parity_forces.png`` and, where the result has them, ``md_traces.png``,
``clusters.png`` and ``formation_energies.png``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pyiron_assyst.fitting.results import TransferabilityResult

__all__ = ["markdown", "md_figure", "md_limits", "write_report"]

_RED_FAIL = '<span style="color:red">**FAIL**</span>'


def write_report(result: TransferabilityResult, directory: str | Path) -> list[Path]:
    """Write the table and the pictures of ``result`` into ``directory``; return the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / "transferability.csv", directory / "transferability.md"]
    result.table().to_csv(paths[0], index=False)
    paths[1].write_text(markdown(result))
    return paths + _pictures(result, directory)


def _verdict(result: TransferabilityResult) -> list[str]:
    """The pass/fail checks, failures in red, above the table."""
    if not result.checks:
        return []
    failed = [c for c in result.checks if not c.passed]
    head = (f"{_RED_FAIL}: " + ", ".join(c.name for c in failed) if failed
            else "**PASS**: every check holds")
    lines = [f"Verdict: {head}", "", "| check | result | value | limit | unit | detail |",
             "|---|---|---|---|---|---|"]
    for c in result.checks:
        mark = "pass" if c.passed else _RED_FAIL
        lines.append(f"| {c.name} | {mark} | {c.value:.4g} | {c.limit:.4g} | {c.unit} | "
                     f"{c.detail} |")
    return [*lines, ""]


def markdown(result: TransferabilityResult) -> str:
    """The verdict (if there are checks) and the table as markdown."""
    lines = [*_verdict(result), "| quantity | unit | reference | model | difference | note |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r.quantity} | {r.unit} | {r.reference:.4g} | {r.model:.4g} | "
              f"{r.difference:.3g} | {r.note} |" for r in result.rows]
    return "\n".join(lines) + "\n"


def _pictures(result: TransferabilityResult, directory: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    paths = [_ev_picture(result, directory / "ev_curves.png")]
    paths += [_parity_picture(result, kind, unit, directory / f"parity_{kind}.png")
              for kind, unit in (("energy", "eV/atom"), ("forces", "eV/Å"))]
    if result.md:
        paths.append(_md_picture(result, directory / "md_traces.png"))
    if result.clusters:
        paths.append(_cluster_picture(result, directory / "clusters.png"))
    if result.formation:
        paths.append(_formation_picture(result, directory / "formation_energies.png"))
    return paths


def _ev_picture(result: TransferabilityResult, path: Path) -> Path:
    import matplotlib.pyplot as plt

    elements = sorted({key.split(" ")[0] for key in result.curves})
    fig, axes = plt.subplots(1, max(1, len(elements)), figsize=(5 * max(1, len(elements)), 4),
                             squeeze=False)
    for ax, element in zip(axes[0], elements):
        for key, curve in result.curves.items():
            if key.split(" ")[0] != element:
                continue
            line = ax.plot(curve["volume"], curve["reference"], "o", label=f"{key} reference")
            ax.plot(curve["volume"], curve["model"], "-", color=line[0].get_color(),
                    label=f"{key} model")
        ax.set(xlabel="volume (Å³/atom)", ylabel="energy (eV/atom)", title=element)
        _legend(ax)
    if not elements:
        axes[0][0].set(xlabel="volume (Å³/atom)", ylabel="energy (eV/atom)",
                       title="no E–V curves computed")
    return _save(fig, path)


def _parity_picture(result: TransferabilityResult, kind: str, unit: str, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4))
    for name, (x, y) in result.parity.items():
        if name.endswith(" forces") == (kind == "forces"):
            ax.plot(x, y, ".", ms=3, label=name.removesuffix(" forces"))
    lims = ax.get_xlim()
    ax.plot(lims, lims, "k-", lw=0.5)
    ax.set(xlabel=f"reference ({unit})", ylabel=f"model ({unit})")
    _legend(ax)
    return _save(fig, path)


def _md_picture(result: TransferabilityResult, path: Path) -> Path:
    return _save(md_figure(result), path)


def md_limits(result: TransferabilityResult) -> tuple[list[float], list[float]]:
    """The limits of the MD checks: shortest distances (Å) and energy tolerances (meV/atom)."""
    md = [c for c in result.checks if c.name.startswith("MD ")]
    return (sorted({c.limit for c in md if c.name.endswith("shortest distance")}),
            sorted({c.limit for c in md if c.name.endswith("|E_model - E_ref|")}))


def md_figure(result: TransferabilityResult):  # -> matplotlib.figure.Figure
    """Shortest distance (Å) and ``E_model - E_ref`` (meV/atom) along each model-driven MD
    run against time (ps), with the checks' limits as dashed lines (a run must stay above the
    distance and between the ± energy lines)."""
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 6), sharex=True)
    for trace in result.md:
        label = f"{trace.cell} {trace.temperature:g} K".strip()
        line = top.plot(np.asarray(trace.time) / 1000, trace.shortest, "-",
                        label=label + (" (stopped)" if trace.stopped else ""))
        bottom.plot(np.asarray(trace.time) / 1000, 1000 * trace.error(), "-",
                    color=line[0].get_color())
    distances, tolerances = md_limits(result)
    for limit in distances:
        top.axhline(limit, color="k", ls="--", lw=0.8, label=f"limit {limit:.2f} Å")
    for limit in tolerances:
        for sign in (1, -1):
            bottom.axhline(sign * limit, color="k", ls="--", lw=0.8,
                           label=f"limit ±{limit:g} meV/atom" if sign > 0 else None)
    worst = max((np.nanmax(np.abs(t.error()), initial=0.0) for t in result.md), default=0.0)
    if tolerances and 1000 * worst > 10 * max(tolerances):  # a collapse: keep the band visible
        bottom.set_yscale("symlog", linthresh=max(tolerances))
    top.set(ylabel="shortest distance (Å)")
    _legend(top)
    bottom.set(xlabel="time (ps)", ylabel="E_model - E_ref (meV/atom)")
    _legend(bottom)
    return fig


def _cluster_picture(result: TransferabilityResult, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for kind, curve in result.clusters.items():
        line = ax.plot(curve["distance"], curve["reference"], "o", label=f"{kind} reference")
        ax.plot(curve["distance"], curve["model"], "-", color=line[0].get_color(),
                label=f"{kind} model")
    ax.set(xlabel="distance (Å)", ylabel="energy (eV/atom)")
    _legend(ax)
    return _save(fig, path)


def _formation_picture(result: TransferabilityResult, path: Path) -> Path:
    import matplotlib.pyplot as plt

    names = list(result.formation)
    reference = [1000 * result.formation[n][0] for n in names]
    model = [1000 * result.formation[n][1] for n in names]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(names)), 4))
    ax.bar(x - 0.2, reference, 0.4, label="reference")
    ax.bar(x + 0.2, model, 0.4, label="model")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xticks(x, names, rotation=30, ha="right", rotation_mode="anchor", fontsize=7)
    ax.set(ylabel="formation energy (meV/atom)")
    _legend(ax)
    return _save(fig, path)


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
