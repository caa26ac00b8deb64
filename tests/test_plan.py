"""Plan before spending: exact sampling counts, expected later stages, the bill, the command."""

from __future__ import annotations

import argparse
import json

import pytest

from pyiron_assyst.calculators import EMT
from pyiron_assyst.cli.plan import add_plan_command, run_plan
from pyiron_assyst.core.config import ConfigError, config_from_json
from pyiron_assyst.execution.executors import Executor
from pyiron_assyst.stages.perturb import perturb_with
from pyiron_assyst.stages.perturbations import PerturbConfig, Rattle, Stretch
from pyiron_assyst.stages.relax import FullRelax, VolumeRelax, relax
from pyiron_assyst.stages.sample import Formulas, SampleConfig, sample
from pyiron_assyst.stages.short_range import ShortRangeConfig, short_range
from pyiron_assyst.workflow.plan import PlanAssumptions, plan

SERIAL = Executor(kind="serial")
GROUPS = (1, 2, 12, 47, 99, 123, 166, 191, 194, 216, 221, 225, 229)
BINARY = Formulas.range(("Cu", "Ag"), 0, 4).trim(1, 3)  # 9 compositions with 1-3 atoms


def _drops(report, *reasons: str) -> int:
    counts = report.drop_counts()
    return sum(counts.get(reason, 0) for reason in reasons)


@pytest.mark.parametrize("config", [
    SampleConfig(spacegroups=GROUPS, max_atoms=3, repeat=2),
    SampleConfig(spacegroups=GROUPS, max_atoms=3, max_structures=7),
    SampleConfig(spacegroups=(1, 5, 10, 25, 40), dim=2, max_atoms=3),
])
def test_sampling_count_is_exact(config):
    planned = plan(BINARY, config, volume_relax=None, full_relax=None, perturb_config=None)
    structures, report = sample(BINARY, config, SERIAL)
    generator = _drops(report, "generator_timeout", "generator_error")
    assert planned.stage("sample").exact
    assert planned.stage("sample").n_out == report.n_out + generator == len(structures) + generator
    assert planned.incompatible == _drops(report, "incompatible_group")
    if config.max_structures is None:
        assert planned.grid_points == report.n_candidates
    assert 0 < report.n_out < report.n_candidates  # the grid has both kinds of points


def test_relax_and_perturb_counts_match_a_run_without_filters():
    formulas = Formulas.range("Cu", 1, 3)
    config = SampleConfig(spacegroups=(1, 191, 194, 225, 229), max_atoms=2)
    perturbations = PerturbConfig((Rattle(0.1), Rattle(0.1), Stretch(0.05, 0.01)), seed=1)
    volume, full = VolumeRelax(max_steps=30), FullRelax(max_steps=30)
    planned = plan(formulas, config, perturbations, volume, full)

    sampled, _ = sample(formulas, config, SERIAL)
    volume_relaxed, _ = relax(sampled, volume, EMT(), SERIAL)
    relaxed, _ = relax(volume_relaxed, full, EMT(), SERIAL)
    perturbed, report = perturb_with(relaxed, perturbations)
    assert [planned.stage(s).n_out for s in ("sample", "relax:volume", "relax:full", "perturb")
            ] == [len(sampled), len(volume_relaxed), len(relaxed), len(perturbed)]
    assert report.drop_counts() == {"one_atom_cell": 2 * sum(len(a) == 1 for a in relaxed)}
    short, _ = short_range(relaxed, ShortRangeConfig(), formulas.elements)
    assert planned.stage("short_range").n_out == len(short) == 1 + 9 + 5 + len(relaxed)
    union = len(sampled) + len(volume_relaxed) + len(relaxed) + len(perturbed)
    assert planned.training_set == union + len(short) == planned.stage("label").calculations
    assert plan(formulas, config, perturbations, volume, full, short_range_config=None
                ).training_set == union


def test_bill_by_hand():
    """One simple cubic Cu atom: 1 sampled, 1 + 1 relaxed, 4 of 8 published perturbations apply."""
    assumptions = PlanAssumptions(volume_relax_calls=10, full_relax_calls=30)
    p = plan([{"Cu": 1}], SampleConfig(spacegroups=(221,), max_atoms=1), PerturbConfig(),
             assumptions=assumptions, cost_per_calculation_core_hours=2.0,
             cores_per_calculation=4, short_range_config=None)
    assert [s.n_out for s in p.stages] == [1, 1, 1, 1, 4, 7, 7]
    assert p.calculations == 10 + 30 + 7
    assert p.core_hours == 94.0
    assert p.max_calculations == 101 + 101 + 7  # max_steps = 100: 101 calls each at most
    assert p.hours_per_calculation == 0.5
    reuse = plan([{"Cu": 1}], SampleConfig(spacegroups=(221,), max_atoms=1), PerturbConfig(),
                 assumptions=PlanAssumptions(volume_relax_calls=10, full_relax_calls=30,
                                             relabel_relaxed=False), short_range_config=None)
    assert reuse.stage("label").calculations == 7 - 2
    # the pipeline's short-range structures: 1 isolated atom, 9 dimers, 5 trimers and the
    # relaxed crystal compressed by two factors, each one single point more
    short = plan([{"Cu": 1}], SampleConfig(spacegroups=(221,), max_atoms=1), PerturbConfig(),
                 assumptions=assumptions, cost_per_calculation_core_hours=2.0,
                 short_range_config=ShortRangeConfig(compressions=(0.8, 0.9)))
    assert [s.stage for s in short.stages][-2:] == ["short_range", "label"]
    assert [s.n_out for s in short.stages] == [1, 1, 1, 1, 4, 7, 17, 24]
    assert short.training_set == 24
    assert short.calculations == 10 + 30 + 24
    assert plan([{"Cu": 1}], SampleConfig(spacegroups=(221,), max_atoms=1), PerturbConfig(),
                short_range_config=ShortRangeConfig(enabled=False)) == plan(
        [{"Cu": 1}], SampleConfig(spacegroups=(221,), max_atoms=1), PerturbConfig(),
        short_range_config=None)


def test_fractions_and_trace_scale_the_expected_counts():
    assumptions = PlanAssumptions(sample_filter_pass=0.5, relax_failure=0.25, perturb_pass=0.5,
                                  final_filter_pass=0.8, full_relax_calls=21)
    p = plan([{"Cu": 2}], SampleConfig(spacegroups=(191, 194, 229), max_atoms=2),
             PerturbConfig((Rattle(0.1), Stretch(0.05, 0.01))),
             full_relax=FullRelax(trace=5), assumptions=assumptions, short_range_config=None)
    n = p.stage("sample").n_out
    assert n == 3
    volume = n * 0.5 * 0.75
    full = volume * 0.75 * (1 + 3)  # 20 steps, a snapshot at steps 5, 10 and 15
    assert p.stage("relax:volume").n_out == pytest.approx(volume)
    assert p.stage("relax:full").n_out == pytest.approx(full)
    assert p.stage("perturb").n_out == pytest.approx(full * 2 * 0.5)
    assert p.training_set == pytest.approx(0.8 * (n * 0.5 + volume + full + full))
    assert p.stage("relax:full").calculations == pytest.approx(volume * 21)


def test_assumptions_are_checked_and_round_trip():
    with pytest.raises(ConfigError, match="PlanAssumptions.perturb_pass"):
        PlanAssumptions(perturb_pass=1.5)
    with pytest.raises(ConfigError, match="PlanAssumptions.full_relax_calls"):
        PlanAssumptions(full_relax_calls=0)
    with pytest.raises(ConfigError, match="plan.cores_per_calculation"):
        plan([{"Cu": 1}], cores_per_calculation=0)
    assumptions = PlanAssumptions(relax_failure=0.1, relabel_relaxed=False)
    assert config_from_json(assumptions.to_json()) == assumptions


# ----------------------------------------------------------------------------- the command


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="pyiron-assyst")
    add_plan_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    assert args.handler is run_plan  # what cli.py calls
    code = run_plan(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_command_prints_the_plan_of_the_flags(capsys):
    code, out, _ = _run(["plan", "--elements", "Cu", "--max-atoms", "2", "--json",
                         "--cost-per-calculation", "3", "--cores", "8"], capsys)
    assert code == 0
    data = json.loads(out)
    # the reference calculator is the relaxation calculator: relaxed structures keep labels
    expected = plan(Formulas.range("Cu", 1, 3), SampleConfig(max_atoms=2),
                    assumptions=PlanAssumptions(relabel_relaxed=False),
                    cost_per_calculation_core_hours=3.0, cores_per_calculation=8)
    assert data["core_hours"] == expected.core_hours == 3 * data["calculations"]
    assert [s["n_out"] for s in data["stages"]] == [s.n_out for s in expected.stages]
    code, out, _ = _run(["plan", "--elements", "Cu", "--max-atoms", "2"], capsys)
    assert code == 0
    assert "core-hours" in out
    assert "exact" in out


def test_command_relabels_relaxed_structures_only_for_another_reference(tmp_path, capsys):
    settings = tmp_path / "run.toml"
    settings.write_text('[label]\ntype = "Morse"\n')
    calls = {}
    for name, argv in (("same", []), ("other", [str(settings)])):
        code, out, _ = _run(["plan", *argv, "--max-atoms", "2", "--json"], capsys)
        assert code == 0
        stages = {s["stage"]: s for s in json.loads(out)["stages"]}
        calls[name] = stages["label"]["calculations"]
        relaxed = stages["relax:volume"]["n_out"] + stages["relax:full"]["n_out"]
    assert calls["other"] - calls["same"] == relaxed > 0


def test_command_reads_settings(tmp_path, capsys):
    settings = tmp_path / "run.toml"
    settings.write_text(
        '[formulas]\nlist = [{Cu = 1}, {Cu = 2}]\n'
        '[sample_config]\ntype = "SampleConfig"\nspacegroups = [191, 225, 229]\nmax_atoms = 2\n'
        '[full_relax]\ntype = "FullRelax"\nmax_steps = 10\n'
        '[executor]\ntype = "Executor"\nkind = "slurm_cluster"\ncores = 16\n')
    code, out, _ = _run(["plan", str(settings), "--json", "--full-relax-calls", "5"], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["cores_per_calculation"] == 16
    full = next(s for s in data["stages"] if s["stage"] == "relax:full")
    assert full["calculations"] == 5 * full["n_in"]
    assert full["max_calculations"] == 11 * full[
        "n_in"]
    assert data["stages"][0]["n_out"] == plan(
        [{"Cu": 1}, {"Cu": 2}], SampleConfig(spacegroups=(191, 225, 229), max_atoms=2),
        volume_relax=None, full_relax=None, perturb_config=None).stage("sample").n_out


def test_command_rejects_bad_input(capsys):
    code, _, err = _run(["plan", "--perturb-pass", "2"], capsys)
    assert code == 2
    assert "perturb_pass" in err
    code, _, err = _run(["plan", "--cost-per-calculation", "-1"], capsys)
    assert code == 2
    assert "cost_per_calculation" in err
    code, _, err = _run(["plan", "missing.toml"], capsys)
    assert code == 2
    assert "does not exist" in err


def test_a_cost_model_prices_each_structure_by_atoms_kpoints_and_kind_of_calculation():
    from pyiron_assyst.calculators import EMT
    from pyiron_assyst.calculators.cost import CostModel, kpoint_count
    from pyiron_assyst.calculators.structure_settings import StructureSettings
    from pyiron_assyst.workflow.plan import _stand_in

    model = CostModel(reference_core_hours=0.5, atom_exponent=2.0, relax_step_fraction=0.25)
    assumptions = PlanAssumptions(volume_relax_calls=4, full_relax_calls=10)
    flat = plan([{"Cu": 2}], sample_config=SampleConfig(spacegroups=(221, 225, 229)),
                assumptions=assumptions, cost_model=model, short_range_config=None)
    volume = flat.stage("relax:volume")
    # every structure is Cu2 (4x the one-atom cost), a relaxation step a quarter of it
    assert volume.core_hours == pytest.approx(volume.n_in * 4 * 0.25 * 0.5 * 4)
    assert flat.stage("label").core_hours == pytest.approx(flat.stage("label").n_in * 0.5 * 4)
    assert flat.core_hours == pytest.approx(sum(s.core_hours for s in flat.stages))
    dft = StructureSettings(EMT(), kpoint_density=3.0)
    meshed = plan([{"Cu": 2}], sample_config=SampleConfig(spacegroups=(221, 225, 229)),
                  assumptions=assumptions, cost_model=model, reference=dft,
                  short_range_config=None)
    k = kpoint_count(_stand_in((("Cu", 2),), 3), dft)
    assert k > 1
    assert meshed.stage("label").core_hours == pytest.approx(k * flat.stage("label").core_hours)
    assert meshed.stage("relax:volume").core_hours == volume.core_hours  # relaxed without mesh
    text = meshed.summary()
    assert "core-hours" in text
    assert "e+" not in text
    # the short-range structures at one k-point: an isolated atom (1 atom), 9 dimers (2), 5
    # trimers (3) and each relaxed Cu2 compressed once, priced by their own atom counts
    short = plan([{"Cu": 2}], sample_config=SampleConfig(spacegroups=(221, 225, 229)),
                 assumptions=assumptions, cost_model=model)
    relaxed = short.stage("relax:full").n_out
    assert short.stage("short_range").core_hours == 0.0
    assert short.stage("label").core_hours - flat.stage("label").core_hours == pytest.approx(
        0.5 * (1 + 9 * 4 + 5 * 9 + relaxed * 4))


def test_plan_numbers_are_for_people():
    bill = plan([{"Cu": 1}, {"Cu": 2}], cost_per_calculation_core_hours=300.0,
                cores_per_calculation=1)
    text = bill.summary()
    assert "on 1 core)" in text
    assert "e+" not in text
    assert f"{bill.core_hours:,.0f} core-hours expected" in text


def test_a_selection_scales_the_labels_and_their_cost_by_its_target():
    """One simple cubic Cu atom (7 structures to label, as in :func:`test_bill_by_hand`):
    keeping 3 of them (or 40 %) labels 3 and prices 3/7 of the labels; an off selection
    (``fraction=1``, the pipeline's default) adds no stage."""
    from pyiron_assyst.calculators.cost import CostModel
    from pyiron_assyst.stages.select import SelectConfig
    from pyiron_assyst.workflow.pipeline import DEFAULT_SELECT

    args = ([{"Cu": 1}], SampleConfig(spacegroups=(221,), max_atoms=1), PerturbConfig())
    kwargs = {"assumptions": PlanAssumptions(volume_relax_calls=10, full_relax_calls=30),
              "cost_model": CostModel(), "short_range_config": None}
    whole = plan(*args, **kwargs)
    assert plan(*args, **kwargs, select_config=DEFAULT_SELECT) == whole
    for config in (SelectConfig(count=3), SelectConfig(fraction=0.4)):
        chosen = plan(*args, **kwargs, select_config=config)
        assert [s.stage for s in chosen.stages][-3:] == ["final_filter", "select", "label"]
        assert chosen.stage("select").n_in == 7
        assert chosen.stage("select").n_out == chosen.training_set == 3  # round(0.4 * 7)
        assert chosen.stage("label").calculations == 3
        assert chosen.stage("label").core_hours == pytest.approx(
            3 / 7 * whole.stage("label").core_hours)
        assert chosen.calculations == whole.calculations - 4
    # the short-range structures join after the selection, whole: 1 + 9 + 5 + 1 compressed
    short = plan(*args, **{**kwargs, "short_range_config": ShortRangeConfig()},
                 select_config=SelectConfig(count=3))
    assert [s.stage for s in short.stages][-3:] == ["select", "short_range", "label"]
    assert short.stage("label").calculations == short.training_set == 3 + 16
    binary = plan(BINARY, SampleConfig(spacegroups=(221, 225, 229), max_atoms=3),
                  select_config=SelectConfig(count=1))
    # one per composition: Cu, Ag, CuAg (Cu2 is Cu; Cu2Ag and CuAg2 fit none of the groups)
    assert binary.stage("select").n_out == 3
    assert plan(BINARY, SampleConfig(spacegroups=(221, 225, 229), max_atoms=3),
                select_config=SelectConfig(count=1, keep_compositions=False)).stage(
        "select").n_out == 1


def test_command_plans_the_select_table(tmp_path, capsys):
    settings = tmp_path / "run.toml"
    settings.write_text('[select]\ntype = "SelectConfig"\nfraction = 0.5\n')
    code, out, _ = _run(["plan", str(settings), "--max-atoms", "2", "--json"], capsys)
    assert code == 0
    stages = {s["stage"]: s for s in json.loads(out)["stages"]}
    assert stages["select"]["n_in"] == stages["final_filter"]["n_out"]
    assert stages["select"]["n_out"] < stages["select"]["n_in"]
    assert stages["label"]["n_in"] == stages["select"]["n_out"] + stages["short_range"]["n_out"]
    code, out, _ = _run(["plan", "--max-atoms", "2", "--json"], capsys)
    assert "select" not in {s["stage"] for s in json.loads(out)["stages"]}  # off by default


def test_command_plans_the_short_range_table(tmp_path, capsys):
    """``plan`` reads ``[short_range]`` as ``run`` does: off, no stage; fewer dimer distances,
    fewer structures (Cu: 1 isolated atom, 3 dimers, 5 trimers, 1 per relaxed crystal)."""
    settings = tmp_path / "run.toml"
    settings.write_text('[short_range]\ntype = "ShortRangeConfig"\nenabled = false\n')
    code, out, _ = _run(["plan", str(settings), "--max-atoms", "2", "--json"], capsys)
    assert code == 0
    assert "short_range" not in {s["stage"] for s in json.loads(out)["stages"]}
    settings.write_text('[short_range]\ntype = "ShortRangeConfig"\n'
                        'dimer_fractions = [0.6, 0.8, 1.0]\n')
    code, out, _ = _run(["plan", str(settings), "--max-atoms", "2", "--json"], capsys)
    stages = {s["stage"]: s for s in json.loads(out)["stages"]}
    assert stages["short_range"]["n_in"] == stages["relax:full"]["n_out"]
    assert stages["short_range"]["n_out"] == 1 + 3 + 5 + stages["relax:full"]["n_out"]


def test_a_relaxation_with_its_own_calculator_costs_no_calculations():
    """A CHGNet volume relaxation in a DFT run: its calls are not DFT calculations; a
    pre-relaxation is named in the note."""
    from pyiron_assyst.calculators import Morse

    formulas = [{"Cu": 1}, {"Cu": 2}]
    config = SampleConfig(spacegroups=tuple(range(1, 231, 20)), max_atoms=2, seed=0)
    plain = {s.stage: s for s in plan(formulas, config, short_range_config=None).stages}
    cheap = {s.stage: s for s in plan(formulas, config, short_range_config=None,
                                      volume_relax=VolumeRelax(calculator=Morse()),
                                      full_relax=FullRelax(pre_relax=Morse())).stages}
    assert plain["relax:volume"].calculations > 0
    assert cheap["relax:volume"].calculations == 0.0
    assert cheap["relax:volume"].n_out == plain["relax:volume"].n_out
    assert cheap["relax:volume"].note.startswith("with its own calculator Morse: ")
    assert "after a pre-relaxation with Morse" in cheap["relax:full"].note
    assert cheap["relax:full"].calculations == plain["relax:full"].calculations


def test_command_plans_the_less_dft_example(capsys):
    """``examples/al_chgnet_gpaw.toml``: CHGNet volume relaxation (no DFT calculations) and a
    CHGNet pre-relaxation before at most 20 GPAW steps; the same sampling as al_gpaw.toml."""
    from pyiron_assyst.calculators.chgnet import CHGNet
    from pyiron_assyst.cli import settings

    _, configs, _ = settings.load_settings("examples/al_chgnet_gpaw.toml")
    assert configs["volume_relax"].calculator == CHGNet()
    assert configs["full_relax"].pre_relax == CHGNet()
    assert configs["full_relax"].max_steps == 20
    assert type(configs["calculator"]).__name__ == "Gpaw"
    stages = {}
    for example in ("al_gpaw", "al_chgnet_gpaw"):
        code, out, _ = _run(["plan", f"examples/{example}.toml", "--json"], capsys)
        assert code == 0
        stages[example] = {s["stage"]: s for s in json.loads(out)["stages"]}
    plain, cheap = stages["al_gpaw"], stages["al_chgnet_gpaw"]
    assert plain["relax:volume"]["calculations"] > 0
    assert cheap["relax:volume"]["calculations"] == 0
    assert cheap["relax:volume"]["note"].startswith("with its own calculator CHGNet")
    assert cheap["relax:full"]["max_calculations"] == 21 * cheap["relax:full"]["n_in"]
    assert cheap["label"]["n_in"] == plain["label"]["n_in"]
