"""Hold whole lineages out of a fit (:func:`split_by_lineage`)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from ase import Atoms

from pyiron_assyst.core.composition import composition
from pyiron_assyst.core.config import require
from pyiron_assyst.core.lineage import uuid_of

__all__ = ["is_anchor", "root_of", "split_by_lineage"]


def root_of(atoms: Atoms) -> str:
    """The lineage of ``atoms``: its root uuid (its own uuid for structures from outside)."""
    return str(atoms.info.get("root", uuid_of(atoms)))


def _root_key(seed: int, root: str) -> bytes:
    return hashlib.sha256(f"split|{seed}|{root}".encode()).digest()


def split_by_lineage(structures: Sequence[Atoms], fraction: float, seed: int = 0,
                     ) -> tuple[list[Atoms], list[Atoms]]:
    """Split into ``(kept, held_out)`` with whole lineages on one side.

    Isolated atoms, dimers and trimers of the short-range stage (``info['short_range']`` of
    kind ``"isolated"``, ``"dimer"``, ``"trimer"``) are no lineage of the method: they are
    always kept (the fit's isolated-atom energies come from them); compressed crystals follow
    their lineage.

    Each composition (reduced formula of a lineage's structures) is split on its own: its
    held-out side holds ``round(fraction * n)`` of its ``n`` lineages (at least one when
    ``fraction > 0`` and it has two or more, never all of them), chosen by a hash of
    ``(seed, root)``. So every composition with two or more lineages is tested (an alloy's few
    lineages are not left all on the training side by chance, as a split over all lineages
    at once left the quick binary case's 1:1 cells), and the split of a lineage does not depend
    on the order or on the structures of other compositions. With one composition this is
    the split over all lineages. Order within each side is the input order.

    Parameters
    ----------
    structures
        Structures with ``Atoms.info['root']`` (structures without are their own lineage).
    fraction
        Fraction of lineages held out, in [0, 1).
    seed
        Seed of the choice.
    """
    require(0 <= fraction < 1, "split_by_lineage", "fraction", "in [0, 1)", fraction)
    kinds: dict[str, str] = {}  # root -> composition (the least, should a lineage mix them)
    for s in structures:
        if not is_anchor(s):
            root, kind = root_of(s), composition(s)
            kinds[root] = min(kinds.get(root, kind), kind)
    lineages: dict[str, list[str]] = {}
    for root, kind in kinds.items():
        lineages.setdefault(kind, []).append(root)
    held: set[str] = set()
    for roots in lineages.values():
        roots.sort(key=lambda r: _root_key(seed, r))
        n_held = max(round(fraction * len(roots)), 1 if fraction > 0 else 0)
        held.update(roots[:min(n_held, len(roots) - 1)])
    kept = [s for s in structures if is_anchor(s) or root_of(s) not in held]
    return kept, [s for s in structures if not is_anchor(s) and root_of(s) in held]


def is_anchor(atoms: Atoms) -> bool:
    """An isolated atom, dimer or trimer of the short-range stage (never held out)."""
    return atoms.info.get("short_range") in ("isolated", "dimer", "trimer")
