"""The canonical macro end to end: union, labels, curation, reports, lineage, reproducibility,
recipe JSON, and the macro checked against the pipeline's declaration."""

import json

import flowrep as fr
import numpy as np
import pyiron_workflow as pwf
import pytest

from pyiron_assyst.calculators import EMT, Morse
from pyiron_assyst.calculators.evaluation import LABEL_CALCULATOR
from pyiron_assyst.core.info_keys import INFO_KEYS
from pyiron_assyst.execution.executors import Executor
from pyiron_assyst.stages.curate import CurationConfig, isolated_atom
from pyiron_assyst.stages.filters import DistanceFilter
from pyiron_assyst.stages.perturbations import PerturbConfig, Rattle, Stretch
from pyiron_assyst.stages.relax import SymmetryRelax
from pyiron_assyst.stages.sample import Formulas, SampleConfig
from pyiron_assyst.stages.select import RadialDescriptor, SelectConfig, select
from pyiron_assyst.stages.short_range import ShortRangeConfig
from pyiron_assyst.workflow import nodes, pipeline
from pyiron_assyst.workflow.macro import OUTPUTS, assyst, build_workflow
from tests.support.relaxers import GoldenVolumeRelax

FORMULAS = Formulas.range("Cu", 1, 3)
SMALL = {
    "sample_config": SampleConfig(spacegroups=(1, 47, 123, 191, 221, 225, 229), seed=3),
    "perturb_config": PerturbConfig(perturbations=(Rattle(0.1, supercell=True),) * 2
                                    + (Stretch(0.05, 0.02),), filter=DistanceFilter(1.0),
                                    retries=5, seed=3),
}


def run_macro(**kwargs):
    run = pwf.node(assyst).run(formulas=FORMULAS, **{**SMALL, **kwargs})
    assert run.exception is None, run.exception
    return dict(run.outputs)


def fingerprint(structures):
    return [(s.info["uuid"], s.numbers.tobytes(), s.positions.tobytes(), s.cell.array.tobytes(),
             s.get_potential_energy() if s.calc is not None else None) for s in structures]


@pytest.fixture(scope="module")
def serial():
    return run_macro(executor=Executor(kind="serial"))


def test_outputs_are_the_filtered_union_of_the_stages(serial):
    assert set(serial) == set(OUTPUTS)
    union = serial["sampled"] + serial["volume_relaxed"] + serial["relaxed"] + serial["perturbed"]
    report = serial["filter_report"]
    assert report.n_candidates == len(union)
    dropped = {d.uuid for d in report.drops}
    kept = [s for s in union if s.info["uuid"] not in dropped]
    assert serial["filtered"] == kept  # the same objects
    assert len(serial["perturbed"]) > 0
    assert len(serial["relaxed"]) > 0


def test_the_training_set_is_the_labelled_curated_filtered_union(serial):
    filtered, labelled = serial["filtered"] + serial["short_range"], serial["labelled"]
    emt = EMT().config_hash()
    assert len(labelled) == len(filtered) == serial["label_report"].n_out
    for before, after in zip(filtered, labelled, strict=True):
        if before.info["step"].startswith("relax"):
            assert after is before  # the relaxation's single point is the label
        else:
            assert after.info["parent"] == before.info["uuid"]
            assert after.info["step"] == "label"
            reference = before.copy()
            reference.calc = EMT().calculator_for(reference)
            assert after.get_potential_energy() == reference.get_potential_energy()
        assert after.info[LABEL_CALCULATOR] == emt
    # no force call for a relaxed structure: one per sampled or perturbed structure
    relaxed = sum(s.info["step"].startswith("relax") for s in filtered)
    assert relaxed > 0
    assert serial["label_report"].force_calls == len(filtered) - relaxed
    curate = serial["curate_report"]
    dropped = {d.uuid for d in curate.drops}
    assert curate.n_in == len(labelled)
    assert curate.n_out == len(serial["training_set"])
    assert serial["training_set"] == [s for s in labelled if s.info["uuid"] not in dropped]
    assert set(curate.drop_counts()) <= {"duplicate", "energy_cap", "force_cap"}


def test_short_range_structures_join_after_the_filter_and_reach_the_training_set(serial):
    """On by default: one isolated atom, 9 dimers, 5 trimers and one compressed copy of every
    relaxed crystal, labelled by the reference and all kept by curate, although the final
    filter drops every ordinary structure with a pair closer than 2 Å."""
    short, report = serial["short_range"], serial["short_range_report"]
    n_relaxed = len(serial["relaxed"])
    assert dict(report.notes) == {"isolated": 1, "dimer": 9, "trimer": 5,
                                  "compressed": n_relaxed}
    assert len(short) == report.n_out == 15 + n_relaxed
    short_uuids = {s.info["uuid"] for s in short}
    assert not short_uuids & {s.info["uuid"] for s in serial["filtered"]}
    labelled = [s for s in serial["labelled"] if s.info["parent"] in short_uuids]
    assert len(labelled) == len(short)  # every one labelled by the reference
    trained = [s for s in serial["training_set"] if s.info["parent"] in short_uuids]
    dropped = {d.uuid: d.reason for d in serial["curate_report"].drops}
    lost = [s for s in labelled if s.info["uuid"] in dropped]
    # only compressed copies of relaxed crystals that were duplicates already are dropped
    assert {dropped[s.info["uuid"]] for s in lost} <= {"duplicate"}
    assert {s.info["short_range"] for s in lost} <= {"compressed"}
    assert len(trained) + len(lost) == len(short)
    assert sum(s.info["short_range"] != "compressed" for s in trained) == 15
    closest = min(float(s.get_all_distances(mic=True)[0, 1]) for s in trained
                  if s.info["short_range"] == "dimer")
    assert closest == pytest.approx(0.5 * 2.64)  # half the Cu-Cu bond, far below the filter
    dimers = [s for s in short if s.info["short_range"] == "dimer"]
    # the final filter would drop every cluster (more than 300 Å³/atom in its box), its
    # distance part the three dimers closer than 2 Å (0.5-0.7 x 2.64 Å)
    clusters = [s for s in short if s.info["short_range"] != "compressed"]
    assert not any(pipeline.DEFAULT_FINAL_FILTER(s) for s in clusters)
    assert sum(not DistanceFilter(1.0)(s) for s in dimers) == 3
    curate = serial["curate_report"]
    assert dict(curate.notes) == {"short-range structures exempt from distance and caps":
                                  len(short)}
    off = run_macro(executor=Executor(kind="serial"),
                    short_range_config=ShortRangeConfig(enabled=False))
    assert off["short_range"] == []
    assert len(off["labelled"]) == len(off["filtered"])


HALF = SelectConfig(fraction=0.5, seed=2, descriptor=RadialDescriptor())
"""A selection keeping half of the filtered set (the radial descriptor: cheap)."""


@pytest.fixture(scope="module")
def selecting():
    return run_macro(executor=Executor(kind="serial"), select_config=HALF)


def test_selection_is_off_by_default_and_passes_the_filtered_set_through(serial):
    report = serial["select_report"]
    assert pipeline.defaults()["select_config"] == pipeline.DEFAULT_SELECT
    assert pipeline.DEFAULT_SELECT.keeps_all
    assert len(serial["selected"]) == len(serial["filtered"]) > 0
    assert all(a is b for a, b in zip(serial["selected"], serial["filtered"], strict=True))
    assert report.stage == "select"
    assert report.drops == ()
    assert report.n_in == report.n_out == len(serial["filtered"])
    assert dict(report.notes) == {"selection_off": 1.0}
    assert serial["label_report"].n_in == len(serial["filtered"]) + len(serial["short_range"])
    assert not any("selection_score" in s.info for s in serial["training_set"])


def test_a_selection_labels_fewer_structures_and_counts_every_drop(serial, selecting):
    """Half of the filtered set is labelled; the short-range structures all are; every
    composition stays; the choice is the stage's own for that pool and seed."""
    out, report = selecting, selecting["select_report"]
    filtered = [s.info["uuid"] for s in out["filtered"]]
    assert filtered == [s.info["uuid"] for s in serial["filtered"]]  # nothing upstream changes
    assert len(out["selected"]) == HALF.target(len(filtered)) < len(filtered)
    assert report.drop_counts() == {"not_selected": len(filtered) - len(out["selected"])}
    kept = {s.info["uuid"] for s in out["selected"]}
    assert kept | {d.uuid for d in report.drops} == set(filtered)
    assert len(out["labelled"]) == len(serial["labelled"]) - len(report.drops)
    assert out["label_report"].n_in == len(out["selected"]) + len(out["short_range"])
    relaxed = sum(s.info["step"].startswith("relax") for s in out["selected"])
    assert 0 < relaxed < len(out["selected"])  # kept relaxed structures keep their labels
    assert out["label_report"].force_calls == len(out["selected"]) - relaxed + len(
        out["short_range"])
    short = {s.info["uuid"] for s in out["short_range"]}
    assert short == {s.info["uuid"] for s in serial["short_range"]}
    assert short <= {s.info["parent"] for s in out["labelled"]}  # never subject to selection

    def compositions(structures):
        return {s.get_chemical_formula(empirical=True) for s in structures}

    assert compositions(out["selected"]) == compositions(out["filtered"])
    again, _ = select(out["filtered"], HALF, EMT())  # deterministic for the pool and seed
    assert [s.info["uuid"] for s in again] == [s.info["uuid"] for s in out["selected"]]
    other, _ = select(out["filtered"], SelectConfig(fraction=0.5, seed=3,
                                                    descriptor=RadialDescriptor()), EMT())
    assert {s.info["uuid"] for s in other} != kept
    dropped = {d.uuid for d in report.drops}
    assert not dropped & {s.info["uuid"] for s in out["training_set"]}
    assert not dropped & {s.info["parent"] for s in out["labelled"]
                          if s.info["step"] == "label"}  # none of them was labelled


def test_isolated_atom_energies_come_from_the_reference_calculator(serial):
    atom = isolated_atom("Cu")
    atom.calc = EMT().calculator_for(atom)
    assert serial["reference_energies"] == {"Cu": atom.get_potential_energy()}
    (stored,) = serial["isolated_atoms"]
    assert stored.info["parent"] == atom.info["uuid"]
    assert stored.info["step"] == "label"
    assert serial["reference_report"].stage == "isolated_atoms"


def test_another_reference_labels_every_structure_again(serial):
    morse = Morse()
    out = run_macro(executor=Executor(kind="serial"), reference=morse,
                    curation=CurationConfig())
    assert [s.info["uuid"] for s in out["filtered"]] == [
        s.info["uuid"] for s in serial["filtered"]]  # the reference changes no relaxation
    assert out["label_report"].force_calls == len(out["filtered"]) + len(out["short_range"])
    assert all(s.info[LABEL_CALCULATOR] == morse.config_hash() for s in out["labelled"])
    atom = isolated_atom("Cu")
    atom.calc = morse.calculator_for(atom)
    assert out["reference_energies"] == {"Cu": atom.get_potential_energy()}
    assert out["curate_report"].drop_counts().keys() <= {"duplicate"}  # no caps


def test_the_macro_is_checked_against_the_pipeline_declaration():
    recipe = json.loads(assyst.flowrep_recipe.model_dump_json())
    assert pipeline.check_recipe(recipe) == []
    swapped = json.loads(json.dumps(recipe))  # label with the relaxation calculator directly
    inner = swapped["nodes"]["label_and_curate_0"]
    inner["input_edges"]["label_0.calculator"] = "executor"
    assert any("label: configs" in p for p in pipeline.check_recipe(swapped))
    rewired = json.loads(json.dumps(recipe))  # perturb the volume-relaxed structures
    rewired["edges"]["perturb_0.structures"] = "relax_0.structures"
    assert pipeline.check_recipe(rewired) == [
        "perturb: reads ['volume_relaxed'] != ['relaxed']"]
    assert pipeline.stored_stages()[-1] == "training_set"
    assert "isolated_atoms" not in pipeline.figure_stages()
    bypass = json.loads(json.dumps(recipe))  # label the filtered set, not the selected one
    bypass["edges"]["add_short_range_0.filtered"] = bypass["edges"]["select_0.structures"]
    assert pipeline.check_recipe(bypass) == [
        "label: reads ['filtered', 'short_range'] != ['selected', 'short_range']"]


def test_the_selected_set_is_not_a_stored_stage():
    """The stage files of a run keep the numbering of runs from before the select step;
    its drops are in its report, which every run saves."""
    assert "selected" not in pipeline.stored_stages()
    assert pipeline.stored_stages() == ("sampled", "volume_relaxed", "relaxed", "perturbed",
                                        "short_range", "isolated_atoms", "training_set")
    assert "select_report" in OUTPUTS


def test_reports_chain_from_stage_to_stage(serial):
    s = serial
    assert s["sample_report"].n_out == s["sample_filter_report"].n_in
    assert s["sample_filter_report"].n_out == s["volume_report"].n_in == len(s["sampled"])
    assert s["volume_report"].n_out == s["relax_report"].n_in == len(s["volume_relaxed"])
    assert s["relax_report"].n_out == s["perturb_report"].n_in == len(s["relaxed"])
    assert s["perturb_report"].n_candidates == 3 * len(s["relaxed"])
    assert s["perturb_report"].n_out == len(s["perturbed"])


def test_every_structure_descends_from_a_sampled_crystal(serial):
    roots = {s.info["uuid"] for s in serial["sampled"]}
    parents = {s.info["uuid"] for s in serial["relaxed"]}
    for structure in serial["perturbed"]:
        assert structure.info["root"] in roots
        assert structure.info["parent"] in parents
        assert structure.info["ancestry"].split(";")[0] == structure.info["root"]
    uuids = [s.info["uuid"] for s in serial["training_set"]]
    assert len(uuids) == len(set(uuids))


def test_only_declared_info_keys_are_written(serial):
    for structure in serial["training_set"]:
        assert set(structure.info) <= set(INFO_KEYS), set(structure.info) - set(INFO_KEYS)


def test_relaxed_structures_carry_labels_and_no_constraints(serial):
    for structure in serial["relaxed"]:
        results = structure.calc.results
        assert {"energy", "free_energy", "forces", "stress"} <= set(results)
        assert structure.constraints == []
        assert isinstance(structure.info["converged"], bool)


def test_same_seed_same_set_serial_or_parallel(serial):
    parallel = run_macro(executor=Executor(kind="process", max_workers=2))
    assert fingerprint(parallel["training_set"]) == fingerprint(serial["training_set"])


def test_another_seed_gives_another_set(serial):
    other = run_macro(sample_config=SampleConfig(spacegroups=(1, 47, 123, 191, 221, 225, 229),
                                                 seed=4), executor=Executor(kind="serial"))
    assert fingerprint(other["sampled"]) != fingerprint(serial["sampled"])


def test_a_custom_relaxer_runs_through_the_macro():
    out = run_macro(volume_relax=GoldenVolumeRelax(), full_relax=SymmetryRelax(),
                    executor=Executor(kind="serial"))
    assert out["volume_report"].stage == "relax:golden"
    assert all(s.info["step"] == "relax:golden" for s in out["volume_relaxed"])
    for before, after in zip(out["sampled"], out["volume_relaxed"]):
        scale = (after.get_volume() / before.get_volume()) ** (1 / 3)
        assert scale != 1.0
        np.testing.assert_allclose(after.cell.array, scale * before.cell.array, atol=1e-9)


def test_recipe_json_round_trip_keeps_the_configs():
    configs = {**SMALL, "calculator": Morse(epsilon=0.3, r0=2.8, rho0=4.0),
               "reference": EMT(), "curation": CurationConfig(force_cap=40.0),
               "executor": Executor(kind="serial")}
    wf = build_workflow(FORMULAS, **configs)
    text = wf.recipe.model_dump_json()
    rebuilt = pwf.Workflow.from_recipe(fr.schemas.WorkflowRecipe.model_validate_json(text), "copy")
    run = rebuilt.run()
    assert run.exception is None, run.exception
    direct = run_macro(**configs)
    assert fingerprint(run.outputs["training_set"]) == fingerprint(direct["training_set"])
    assert run.outputs["reference_energies"] == direct["reference_energies"]


def test_recipe_json_round_trip_keeps_a_selection(selecting):
    wf = build_workflow(FORMULAS, **SMALL, select_config=HALF, executor=Executor(kind="serial"))
    text = wf.recipe.model_dump_json()
    rebuilt = pwf.Workflow.from_recipe(fr.schemas.WorkflowRecipe.model_validate_json(text), "copy")
    run = rebuilt.run()
    assert run.exception is None, run.exception
    assert fingerprint(run.outputs["training_set"]) == fingerprint(selecting["training_set"])
    assert run.outputs["select_report"].drop_counts() == selecting[
        "select_report"].drop_counts()


def test_config_classes_are_nodes_with_editable_constants():
    wf = pwf.Workflow("configs")
    wf.sample = pwf.node(SampleConfig, max_atoms=2, seed=5)
    wf.create_output_from(wf.sample.outputs.instance, label="config")
    run = wf.run()
    assert run.exception is None
    assert run.outputs["config"] == SampleConfig(max_atoms=2, seed=5)
    assert nodes.config_from_json(EMT().to_json()) == EMT()


def test_a_cheap_volume_relaxation_and_pre_relaxation_in_the_pipeline():
    """The less-DFT pattern with stand-ins (Morse for CHGNet, EMT for DFT): the volume
    relaxation is all Morse, the full relaxation Morse then EMT; every label is EMT's; the
    fully relaxed structures keep their EMT single point as label, the Morse-relaxed ones are
    labelled anew."""
    from pyiron_assyst.calculators import Morse
    from pyiron_assyst.stages.relax import FullRelax, VolumeRelax

    out = run_macro(executor=Executor(kind="serial"),
                    volume_relax=VolumeRelax(calculator=Morse()),
                    full_relax=FullRelax(pre_relax=Morse()))
    morse, emt = Morse().config_hash(), EMT().config_hash()
    assert {s.info[LABEL_CALCULATOR] for s in out["volume_relaxed"]} == {morse}
    assert out["volume_report"].force_calls > 0
    assert {s.info[LABEL_CALCULATOR] for s in out["relaxed"]} == {emt}
    assert all(s.info["pre_relax_steps"] >= 0 for s in out["relaxed"])
    assert {s.info[LABEL_CALCULATOR] for s in out["labelled"]} == {emt}
    filtered = out["filtered"] + out["short_range"]
    fully = sum(s.info["step"] == "relax:full" for s in filtered)
    assert 0 < fully < sum(s.info["step"].startswith("relax") for s in filtered)
    assert out["label_report"].force_calls == len(filtered) - fully
