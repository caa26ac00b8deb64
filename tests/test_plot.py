"""Pictures: each figure has the right data, labelled axes with units, and PNG files."""

from __future__ import annotations

import itertools
import re

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.container import BarContainer
from matplotlib.figure import Figure
from matplotlib.patches import StepPatch

from pyiron_assyst.core.info_keys import set_info
from pyiron_assyst.core.report import Drop, StageReport
from pyiron_assyst.figures import plots as plot
from pyiron_assyst.figures.files import write_all
from pyiron_assyst.numerics import distances

A_FCC, A_BCC = 3.6, 2.9
V_FCC, V_BCC = A_FCC**3 / 4, A_BCC**3 / 2  # Å³/atom
D_FCC, D_BCC = A_FCC / np.sqrt(2), A_BCC * np.sqrt(3) / 2  # nearest distance, Å
PNG_HEADER = b"\x89PNG\r\n\x1a\n"


def _ax():
    return Figure().add_subplot()


def _with_energy(atoms: Atoms, per_atom: float, free: float | None = None) -> Atoms:
    n = len(atoms)
    atoms.calc = SinglePointCalculator(atoms, energy=per_atom * n, forces=np.zeros((n, 3)),
                                       free_energy=(free if free is not None else per_atom) * n)
    return atoms


def _stamp(atoms: Atoms, requested: int, found: int) -> Atoms:
    set_info(atoms, "requested_group", requested)
    set_info(atoms, "found_group", found)
    return atoms


@pytest.fixture
def structures() -> list[Atoms]:
    """fcc Cu (primitive and cubic, E = -3.5 eV/atom) and bcc Cu (E = -3.0), stamped."""
    return [
        _stamp(_with_energy(bulk("Cu", "fcc", a=A_FCC), -3.5), 225, 225),
        _stamp(_with_energy(bulk("Cu", "fcc", a=A_FCC, cubic=True), -3.5), 221, 225),
        _stamp(_with_energy(bulk("Cu", "bcc", a=A_BCC), -3.0), 229, 229),
    ]


def _stairs(ax) -> list[StepPatch]:
    return [p for p in ax.patches if isinstance(p, StepPatch)]


def _counts(ax) -> list[list[float]]:
    return [list(p.get_data().values) for p in _stairs(ax)]


def _has_units(ax) -> None:
    for label in (ax.get_xlabel(), ax.get_ylabel()):
        assert re.search(r"\(.+\)$", label), f"no unit in axis label {label!r}"


def _texts(ax) -> str:
    """The annotation in an empty axes and the note above the axes."""
    return " ".join([*(t.get_text() for t in ax.texts), ax.get_title(loc="right")]).strip()


# ------------------------------------------------------------------------------ histograms


def test_volume_histogram_bins_each_structure(structures):
    ax = plot.volume_histogram(structures, _ax(), bins=[11.0, 11.5, 12.0, 12.5])
    assert _counts(ax) == [[0, 2, 1]]  # V_FCC = 11.664, V_BCC = 12.195 Å³/atom
    assert ax.get_xlabel() == "Volume per atom (Å³/atom)"
    _has_units(ax)


def test_histogram_of_labelled_sets_draws_one_curve_each(structures):
    sets = {"sample": structures[:2], "relax": structures[2:]}
    ax = plot.volume_histogram(sets, _ax(), bins=[11.0, 12.0, 13.0])
    assert _counts(ax) == [[2, 0], [0, 1]]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["sample (2)", "relax (1)"]


def test_far_outliers_are_left_out_and_counted(structures):
    many = [bulk("Cu", "fcc", a=a) for a in np.linspace(3.0, 4.0, 400)]
    many.append(bulk("Cu", "fcc", a=40.0))  # an exploded cell: 16000 Å³/atom
    ax = plot.volume_histogram(many, _ax())
    (stairs,) = _stairs(ax)
    assert stairs.get_data().values.sum() == 400
    assert stairs.get_data().edges[-1] == pytest.approx(4.0**3 / 4)
    assert _texts(ax) == "1 outside the shown range"


def test_automatic_bins_are_capped():
    many = [bulk("Cu", "fcc", a=a) for a in np.linspace(3.0, 4.0, 400)]
    (stairs,) = _stairs(plot.volume_histogram(many, _ax(), value_range=(0.0, 200.0)))
    assert len(stairs.get_data().edges) == plot.MAX_BINS + 1
    assert stairs.get_data().values.sum() == 400


def test_energy_histogram_reads_stored_energies_and_skips_the_rest(structures):
    bare = bulk("Cu", "fcc", a=A_FCC)  # no calculator: left out
    ax = plot.energy_histogram([*structures, bare], _ax(), bins=[-4.0, -3.25, -2.5])
    assert _counts(ax) == [[2, 1]]
    assert _texts(ax) == "1 without a stored 'energy'"
    assert ax.get_xlabel() == "Energy per atom (eV/atom)"
    _has_units(ax)
    free = [_with_energy(bulk("Cu"), -3.5, free=-2.0)]
    assert _counts(plot.energy_histogram(free, _ax(), bins=[-4, -3, -1], key="free_energy")) == [
        [0, 1]]


def test_distance_histogram_finds_periodic_nearest_neighbours(structures):
    bins = sorted([D_BCC - 1e-6, D_BCC + 1e-6, D_FCC - 1e-6, D_FCC + 1e-6])
    ax = plot.distance_histogram(structures, _ax(), bins=bins)
    assert _counts(ax) == [[1, 0, 2]]  # bcc 2.511 Å; fcc 2.546 Å in 1- and 4-atom cells
    _has_units(ax)
    ax = plot.distance_histogram(structures, _ax(), bins=bins, per="atom")
    assert _counts(ax) == [[1, 0, 5]]  # every atom: 1 in bcc, 1 + 4 in fcc
    assert ax.get_ylabel() == "Atoms (count)"


def test_distance_histogram_of_clusters_and_lonely_atoms():
    dimer = Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 2.3]])
    lonely = Atoms("Cu", positions=[[0, 0, 0]])  # no neighbour at all: left out
    layer = Atoms("Cu", cell=[2.4, 2.6, 0.0], pbc=[True, True, False])  # own images 2.4 Å away
    ax = plot.distance_histogram([dimer, lonely, layer], _ax(), bins=[2.2, 2.35, 2.5])
    assert _counts(ax) == [[1, 1]]
    assert _texts(ax) == "1 without a neighbour within 12 Å"


@st.composite
def _cells(draw) -> Atoms:
    lengths = draw(st.lists(st.floats(2.0, 5.0), min_size=3, max_size=3))
    angles = draw(st.lists(st.floats(70.0, 110.0), min_size=3, max_size=3))
    n = draw(st.integers(1, 3))
    scaled = draw(st.lists(st.floats(0.0, 1.0), min_size=3 * n, max_size=3 * n))
    atoms = Atoms(f"Cu{n}", cell=[*lengths, *angles], pbc=True)
    atoms.set_scaled_positions(np.reshape(scaled, (n, 3)))
    return atoms


def _brute_force_nearest(atoms: Atoms, reach: int = 4) -> float:
    shifts = np.array(list(itertools.product(range(-reach, reach + 1), repeat=3))) @ atoms.cell
    pos = atoms.positions
    vectors = pos[None, :, None, :] + shifts[None, None, :, :] - pos[:, None, None, :]
    distances = np.linalg.norm(vectors, axis=-1)
    center = len(shifts) // 2  # the zero shift
    index = np.arange(len(atoms))
    distances[index, index, center] = np.inf  # an atom and itself (coincident atoms count: 0)
    return float(distances.min())


@settings(max_examples=25, deadline=None)
@given(_cells(), st.sampled_from([distances._BRUTE_FORCE_ENTRIES, 0]))
def test_smallest_distance_matches_brute_force_over_images(atoms, brute_force_entries):
    expected = _brute_force_nearest(atoms)
    with pytest.MonkeyPatch.context() as patch:  # 0: the neighbour-list route for every size
        patch.setattr(distances, "_BRUTE_FORCE_ENTRIES", brute_force_entries)
        ax = plot.distance_histogram([atoms], _ax(), bins=[expected - 1e-7, expected + 1e-7])
    assert _counts(ax) == [[1]]


def test_per_atom_distances_agree_between_pairs_and_neighbour_list():
    atoms = bulk("Cu", "fcc", a=A_FCC, cubic=True).repeat(3)  # 108 atoms: neighbour list
    atoms.rattle(0.1, seed=1)
    bins = np.linspace(2.0, 3.0, 2001)
    by_neighbour_list = _counts(plot.distance_histogram([atoms], _ax(), bins=bins, per="atom"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(distances, "_BRUTE_FORCE_ENTRIES", 10**9)
        by_pairs = _counts(plot.distance_histogram([atoms], _ax(), bins=bins, per="atom"))
    assert by_pairs == by_neighbour_list
    assert sum(by_pairs[0]) == 108


def test_lattice_lengths_and_angles(structures):
    lengths = plot.lattice_length_histogram(structures[:1], _ax(), bins=[2.5, 2.6])
    assert _counts(lengths) == [[1], [1], [1]]  # a = b = c = 3.6/√2 Å
    assert lengths.get_xlabel() == "Lattice length (Å)"
    angles = plot.lattice_angle_histogram(structures, _ax(), bins=[50, 70, 100, 110])
    assert _counts(angles) == [[1, 1, 1]] * 3  # fcc prim 60°, cubic 90°, bcc prim 109.47°
    assert angles.get_xlabel() == "Lattice angle (°)"
    assert [t.get_text() for t in angles.get_legend().get_texts()] == [
        "α (3)", "β (3)", "γ (3)"]
    _has_units(lengths)
    _has_units(angles)


def test_lattice_angles_keep_their_full_range():
    peaked = [bulk("Cu", "fcc", a=A_FCC, cubic=True)] * 100 + [bulk("Cu", "fcc", a=A_FCC)]
    ax = plot.lattice_angle_histogram(peaked, _ax())
    assert [sum(c) for c in _counts(ax)] == [101] * 3
    assert _texts(ax) == ""


# ------------------------------------------------------------------------- other pictures


def test_energy_volume_scatter_for_few_points(structures):
    ax = plot.energy_volume({"fcc": structures[:2], "bcc": structures[2:]}, _ax())
    scatters = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert [len(c.get_offsets()) for c in scatters] == [2, 1]
    np.testing.assert_allclose(scatters[1].get_offsets(), [[V_BCC, -3.0]])
    assert ax.get_xlabel() == "Volume per atom (Å³/atom)"
    assert ax.get_ylabel() == "Energy per atom (eV/atom)"


def test_energy_volume_leaves_out_far_outliers(structures):
    many = [_with_energy(bulk("Cu", "fcc", a=a), -3.5) for a in np.linspace(3.0, 4.0, 50)]
    exploded = _with_energy(bulk("Cu", "fcc", a=40.0), -3.5)
    ax = plot.energy_volume([*many, exploded, bulk("Cu")], _ax())
    (scatter,) = ax.collections
    assert len(scatter.get_offsets()) == 50
    assert _texts(ax) == "1 without a stored 'energy' or a 3-D cell; 1 outside the shown range"


def test_energy_volume_density_for_many_points(structures):
    twice = {"relaxed": structures, "training_set": structures}  # each structure counts once
    ax = plot.energy_volume(twice, _ax(), density_threshold=2)
    (density,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert density.get_array().sum() == 3
    assert len(ax.figure.axes) == 2  # the colour bar
    assert ax.figure.axes[1].get_ylabel() == "Structures (count)"


def test_energy_axes_name_the_calculator(structures):
    ax = plot.energy_volume(structures, _ax(), calculator="EMT")
    assert ax.get_ylabel() == "Energy per atom (eV/atom, EMT)"
    ax = plot.energy_histogram(structures, _ax(), calculator="Gpaw")
    assert ax.get_xlabel() == "Energy per atom (eV/atom, Gpaw)"


def test_stages_without_energies_are_named_not_summed(structures):
    sets = {"sampled": [bulk("Cu")] * 2, "relaxed": [*structures, bulk("Cu")],
            "perturbed": [bulk("Cu")] * 3}
    ax = plot.energy_histogram(sets, _ax())
    assert ax.get_title(loc="right") == (
        "sampled, perturbed: none with a stored 'energy'; relaxed: 1 without a stored 'energy'")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["relaxed (3)"]


def test_energy_volume_panels_show_each_stage_on_shared_axes(structures):
    many = [_with_energy(bulk("Cu", "fcc", a=a), -3.0 - a / 10) for a in (3.5, 3.6, 3.7)]
    far = _with_energy(bulk("Cu", "fcc", a=40.0), -3.5)  # outside the shown range
    sets = {"sampled": [bulk("Cu")], "relaxed": structures,
            "training_set": [*structures, *many, far]}
    fig = Figure()
    axes = plot.energy_volume_panels(sets, fig, {"relaxed": "EMT", "training_set": "Gpaw"})
    assert [ax.get_title(loc="left") for ax in axes] == ["relaxed", "training_set"]
    scatters = [[c for c in ax.collections if isinstance(c, PathCollection)] for ax in axes]
    assert [len(s.get_offsets()) for (s,) in scatters] == [3, 6]
    assert axes[0].get_ylabel() == "Energy per atom (eV/atom, EMT)"
    assert axes[0].get_xlim() == axes[1].get_xlim()
    assert axes[0].get_ylim() == axes[1].get_ylim()
    # the legend counts every structure with an energy, like the energy histogram
    assert [t.get_text() for t in axes[1].get_legend().get_texts()] == ["training_set (7)"]
    assert axes[1].get_title(loc="right") == "1 outside the shown range"
    assert fig.get_suptitle() == "not drawn, no stored 'energy': sampled"
    histogram = plot.energy_histogram({"training_set": sets["training_set"]}, _ax())
    assert [t.get_text() for t in histogram.get_legend().get_texts()] == ["training_set (7)"]


def test_space_group_coverage_requested_vs_found(structures):
    unknown = _stamp(bulk("Cu"), 229, 0)  # found_group 0: not determined
    untagged = bulk("Cu")
    ax = plot.space_group_coverage([*structures, unknown, untagged], _ax())
    requested, found = ax.containers
    assert [(b.get_x() + b.get_width() / 2, b.get_height()) for b in requested] == [
        (221, 1), (225, 1), (229, 2)]
    assert [(b.get_x() + b.get_width() / 2, b.get_height()) for b in found] == [
        (225, 2), (229, 1)]
    assert "found = requested for 2 of 4; 1 untagged" in _texts(ax)
    assert ax.get_xlim() == (0.5, 230.5)
    _has_units(ax)


def test_space_group_coverage_recomputed_with_spglib(structures):
    ax = plot.space_group_coverage(structures, _ax(), symprec=1e-3)
    found = ax.containers[1]
    assert [(round(b.get_x() + b.get_width() / 2), b.get_height()) for b in found] == [
        (225, 2), (229, 1)]


def test_composition_per_formula_ordered_by_size(structures):
    ax = plot.composition_bars(structures, _ax())
    (bars,) = ax.containers
    assert [b.get_height() for b in bars] == [2, 1]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Cu", "Cu4"]
    _has_units(ax)
    pooled = plot.composition_bars(structures, _ax(), max_formulas=1)
    assert [t.get_text() for t in pooled.get_xticklabels()] == ["Cu", "other (1)"]


def test_composition_per_concentration_for_binaries():
    cu3au = bulk("Cu", "fcc", a=3.7, cubic=True)
    cu3au[0].symbol = "Au"
    cuau = bulk("CuAu", "cesiumchloride", a=3.0)
    ax = plot.composition_bars([cuau, cuau.copy(), cu3au], _ax())
    (bars,) = ax.containers
    np.testing.assert_allclose([b.get_x() + b.get_width() / 2 for b in bars], [0.5, 0.75])
    assert [b.get_height() for b in bars] == [2, 1]
    assert ax.get_xlabel() == "Concentration of Cu (atomic fraction)"
    ternary = Atoms("CuAgAu", positions=np.eye(3) * 2.5, cell=np.eye(3) * 5, pbc=True)
    with pytest.raises(ValueError, match="two elements"):
        plot.composition_bars([ternary], _ax(), by="concentration")


def _reports() -> list[StageReport]:
    return [
        StageReport("sample", n_in=1, n_candidates=5, n_out=3,
                    drops=(Drop("a", "incompatible_group"), Drop("b", "incompatible_group"))),
        StageReport("relax:volume", n_in=3, n_candidates=3, n_out=2,
                    drops=(Drop("c", "calculator_error", "boom"),)),
        StageReport("filter", n_in=2, n_candidates=2, n_out=1, drops=(Drop("d", "filter"),)),
        StageReport("label", n_in=1, n_candidates=1, n_out=1),
    ]


def test_stage_counts_bars_and_stacked_drop_reasons():
    reports = _reports()
    ax = plot.stage_counts(reports, _ax())
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    n_in, n_out, *reasons = bars
    # the sample stage starts from 1 formula: not a structure, so no "in" bar, but a label
    assert [b.get_height() for b in n_in] == [0, 3, 2, 1]
    assert [b.get_height() for b in n_out] == [3, 2, 1, 1]
    assert [c.get_label() for c in reasons] == [  # no sums over stages in the legend
        "dropped: calculator_error", "dropped: filter", "dropped: incompatible_group"]
    stacked = np.sum([[b.get_height() for b in c] for c in reasons], axis=0)
    assert list(stacked) == [len(r.drops) for r in reports]
    tops = [max(b.get_y() + b.get_height() for b in stack) for stack in zip(*reasons)]
    assert tops == [2, 1, 1, 0]
    assert reasons[0][1].get_hatch() == "//"
    assert reasons[1][2].get_hatch() is None
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "sample\n(from 1 formulas)", *(r.stage for r in reports[1:])]
    _has_units(ax)


def test_stage_counts_label_each_stages_drops_not_their_sum():
    reports = [StageReport("sample_filter", n_in=3, n_candidates=3, n_out=1,
                           drops=(Drop("a", "filter"), Drop("b", "filter"))),
               StageReport("final_filter", n_in=9, n_candidates=9, n_out=4,
                           drops=tuple(Drop(str(i), "filter") for i in range(5)))]
    ax = plot.stage_counts(reports, _ax())
    _, _, filtered = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert [b.get_height() for b in filtered] == [2, 5]
    labels = [t.get_text() for t in ax.texts]
    assert "2" in labels
    assert "5" in labels
    assert "7" not in " ".join(t.get_text() for t in ax.get_legend().get_texts())


# --------------------------------------------------------------------- empty input, files


EMPTY_CALLS = [
    (plot.volume_histogram, []), (plot.volume_histogram, {}), (plot.energy_histogram, []),
    (plot.distance_histogram, {"sample": []}), (plot.lattice_length_histogram, []),
    (plot.lattice_angle_histogram, []), (plot.energy_volume, []),
    (plot.space_group_coverage, []), (plot.composition_bars, []), (plot.stage_counts, []),
]


@pytest.mark.parametrize(("function", "data"), EMPTY_CALLS)
def test_empty_input_gives_an_annotated_labelled_axes(function, data):
    ax = function(data, _ax())
    assert _texts(ax).startswith("no ")
    _has_units(ax)


def test_structures_without_data_are_annotated_not_plotted(structures):
    bare = [bulk("Cu")]
    ax = plot.energy_histogram(bare, _ax())
    assert ax.texts[0].get_text() == "no structures with a stored 'energy'"
    assert ax.get_title(loc="right") == "1 without a stored 'energy'"
    ax = plot.energy_volume(bare, _ax())
    assert ax.get_title(loc="right") == "1 without a stored 'energy' or a 3-D cell"


def test_equal_values_get_a_finite_bin():
    ax = plot.volume_histogram([bulk("Cu", "fcc", a=A_FCC)] * 3, _ax())
    (stairs,) = _stairs(ax)
    assert stairs.get_data().values.sum() == 3
    assert stairs.get_data().edges[0] < V_FCC < stairs.get_data().edges[-1]


def test_a_new_figure_when_no_axes_is_given(structures):
    from matplotlib import pyplot as plt

    ax = plot.volume_histogram(structures)
    try:
        assert ax.figure is not None
        assert len(_stairs(ax)) == 1
    finally:
        plt.close(ax.figure)


def _check_pngs(paths) -> None:
    assert [p.name for p in paths] == [
        "stage_counts.png", "volume_per_atom.png", "energy_per_atom.png", "nearest_distance.png",
        "energy_volume.png", "space_groups.png", "composition.png", "lattice.png"]
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(PNG_HEADER), path
        assert len(data) > 1024, path


def test_write_all_writes_every_picture(structures, tmp_path):
    by_stage = {"sample": structures, "training_set": structures[:2]}
    paths = write_all(by_stage, _reports(), tmp_path / "pictures")
    _check_pngs(paths)
    assert all(p.parent == tmp_path / "pictures" for p in paths)


def test_write_all_names_one_calculator_on_the_axis_or_each_in_the_legend(structures,
                                                                          tmp_path,
                                                                          monkeypatch):
    drawn = []
    monkeypatch.setattr("pyiron_assyst.figures.files.energy_histogram",
                        lambda sets, ax, calculator: drawn.append((list(sets), calculator)))
    sets = {"sampled": [bulk("Cu")], "relaxed": structures, "training_set": structures}
    write_all(sets, [], tmp_path, calculators={"relaxed": "EMT", "training_set": "EMT"})
    write_all(sets, [], tmp_path, calculators={"relaxed": "EMT", "training_set": "Gpaw"})
    assert drawn == [(["sampled", "relaxed", "training_set"], "EMT"),
                     (["sampled", "relaxed, EMT", "training_set, Gpaw"], "")]


def test_write_all_of_nothing_still_writes_annotated_files(tmp_path):
    _check_pngs(write_all({}, [], tmp_path))


def test_write_all_rejects_an_unknown_final_set(structures, tmp_path):
    with pytest.raises(KeyError, match="final='relax'"):
        write_all({"sample": structures}, [], tmp_path, final="relax")
