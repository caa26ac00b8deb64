"""Config nodes whose inputs are the config's fields, and the workflow built from them: its own
inputs (formulas, seed, calculator, executor) and one-line replacement of a config."""

import inspect
import json
import math
import warnings
from dataclasses import replace

import flowrep as fr
import pyiron_workflow as pwf
import pytest
from pyironflow.entry import entry_kind

from pyiron_assyst.calculators import EMT, LennardJones, Morse
from pyiron_assyst.calculators.cost import CostModel
from pyiron_assyst.core.config import Config, ConfigError
from pyiron_assyst.execution.executors import Executor
from pyiron_assyst.stages.curate import CurationConfig
from pyiron_assyst.stages.filters import AspectFilter, DistanceFilter, VolumeFilter
from pyiron_assyst.stages.perturbations import PerturbConfig, Rattle, Stretch
from pyiron_assyst.stages.relax import FullRelax, VolumeRelax
from pyiron_assyst.stages.sample import Formulas, SampleConfig
from pyiron_assyst.stages.select import PowerSpectrum, RadialDescriptor, SelectConfig
from pyiron_assyst.workflow import forms, pipeline
from pyiron_assyst.workflow.macro import assyst, build_workflow, set_config

FORMULAS = Formulas.range("Cu", 1, 3)
SMALL = {"sample_config": SampleConfig(spacegroups=(221, 229), seed=1),
         "executor": Executor(kind="serial")}
NO_INPUTS = "has no input ports"  # pyiron_workflow's warning on a workflow without inputs


def build(config: Config) -> Config:
    """``config`` rebuilt by calling its form with :func:`forms.fields_of` (children first)."""
    fields = {k: build(v) if isinstance(v, Config) else v
              for k, v in forms.fields_of(config).items()}
    return forms.form_of(config)(**fields)


def run_macro(**kwargs):
    run = pwf.node(assyst).run(**{"formulas": FORMULAS, **SMALL, **kwargs})
    assert run.exception is None, run.exception
    return run.outputs


def identity(structures):
    return [(s.info["uuid"], s.get_potential_energy() if s.calc is not None else None)
            for s in structures]


@pytest.mark.parametrize("cls", [c for c in forms.FORMS
                                 if c not in (Formulas, DistanceFilter)])
def test_a_form_without_inputs_is_its_class_default(cls):
    assert forms.FORMS[cls]() == cls()


def test_a_distance_filter_form_defaults_to_one_angstrom():
    assert forms.distance_filter() == DistanceFilter(1.0)  # the class has no default


def test_every_form_input_is_a_jsonable_field_or_a_nested_config():
    for form in {*forms.FORMS.values(), forms.all_of}:
        hints = inspect.get_annotations(form, eval_str=True)
        for name, param in inspect.signature(form).parameters.items():
            nested = isinstance(hints[name], type) and issubclass(hints[name], Config) or (
                any(isinstance(a, type) and issubclass(a, Config)
                    for a in getattr(hints[name], "__args__", ())))
            assert nested or entry_kind(hints[name]) != "none", (form.__name__, name)
            assert param.default is inspect.Parameter.empty or fr.tools.is_jsonable(
                param.default), (form.__name__, name)
    sample_hints = inspect.get_annotations(forms.sample_config, eval_str=True)
    assert sample_hints["spacegroups"] is list  # bare: see the module docstring
    assert sample_hints["seed"] is int
    assert sample_hints["max_atoms"] is int
    assert inspect.get_annotations(forms.full_relax, eval_str=True)["max_steps"] is int


@pytest.mark.parametrize("config", [
    *(c.default for c in pipeline.CONFIGS if c.default is not None),
    FORMULAS,
    SampleConfig(spacegroups=(221, 229), tolerance=(("Cu", 1.1),), max_structures=3, seed=4),
    DistanceFilter({"Cu": 1.1, "Ag": 1.3}),
    VolumeFilter(10.0),
    DistanceFilter(0.9) & AspectFilter(4.0),
    PerturbConfig(perturbations=(Rattle(0.1), Stretch(0.05, 0.02)), filter=None, seed=7),
    CurationConfig(distance=DistanceFilter(0.8), energy_mode="absolute", energy_cap=5.0),
    Executor(kind="slurm_cluster", partition="debug", scheduler_args=("--qos=low",)),
    Morse(epsilon=0.3), LennardJones(rc=6.0), EMT(fixed_cutoff=False),
    VolumeRelax(max_steps=7), FullRelax(pressure=1.0),
    VolumeRelax(calculator=Morse(epsilon=0.4)),
    FullRelax(max_steps=20, pre_relax=LennardJones(rc=5.0), pre_relax_steps=80),
    SelectConfig(fraction=0.3, method="farthest", cost_aware=True,
                 cost_model=CostModel(atom_exponent=2.0), descriptor=RadialDescriptor(n_radial=4)),
    SelectConfig(count=5, keep_compositions=False, descriptor=PowerSpectrum(l_max=2,
                                                                           reduce="mean")),
], ids=repr)
def test_fields_rebuild_the_config_exactly(config):
    rebuilt = build(config)
    assert rebuilt == config
    assert rebuilt.config_hash() == config.config_hash()


def test_only_fields_off_the_default_are_given():
    assert forms.fields_of(SampleConfig(seed=3)) == {"seed": 3}
    assert forms.fields_of(SampleConfig(spacegroups=(221,))) == {"spacegroups": [221]}
    assert forms.fields_of(VolumeFilter(maximum=300.0)) == {"maximum": 300.0}
    assert forms.fields_of(VolumeFilter()) == {}
    assert forms.fields_of(PerturbConfig()) == {}
    assert forms.fields_of(DistanceFilter({"Cu": 1.1})) == {"element_radii": {"Cu": 1.1}}


def test_selection_is_switched_on_by_one_field_of_its_node():
    """The pipeline's select config is a form whose ``fraction`` of 1 means off; nested
    configs (descriptor, cost model) become child nodes only when they differ from the
    class defaults."""
    assert forms.fields_of(pipeline.DEFAULT_SELECT) == {"fraction": 1.0}
    assert forms.fields_of(SelectConfig(fraction=0.4)) == {}
    wf = build_workflow(FORMULAS, **SMALL)
    assert {"fraction", "count", "method", "seed", "descriptor"} <= set(
        wf.cfg_select_config.inputs)
    assert not [n for n in wf.nodes if n.startswith("cfg_select_config_")
                and "_constant_" not in n]  # no child config nodes
    set_config(wf, "select_config", SelectConfig(fraction=0.5, descriptor=RadialDescriptor()))
    assert wf.nodes["cfg_select_config_descriptor"].recipe.reference.info.qualname == (
        "radial_descriptor")
    wf.validate(do_ontology=False)


def test_bad_field_raises_the_configs_own_error():
    with pytest.raises(ConfigError, match=r"SampleConfig\.max_atoms"):
        forms.sample_config(max_atoms=0)
    with pytest.raises(ConfigError, match=r"SampleConfig\.spacegroups"):
        forms.sample_config(spacegroups=[231])
    with pytest.raises(ConfigError, match="kind"):
        forms.executor(kind="threads")


def test_a_list_constant_reaches_a_tuple_field_in_a_workflow():
    wf = pwf.Workflow("forms")
    wf.sample = pwf.node(forms.sample_config, spacegroups=[221, 229], seed=3)
    wf.create_output_from(wf.sample.outputs.config, label="config")
    wf.validate(do_ontology=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", NO_INPUTS)
        run = wf.run()
    assert run.outputs["config"] == SampleConfig(spacegroups=(221, 229), seed=3)
    assert run.outputs["config"].spacegroups == (221, 229)


def test_every_config_of_the_built_workflow_is_a_form_with_its_fields():
    wf = build_workflow(FORMULAS, **SMALL)
    for entry in pipeline.CONFIGS:
        node = wf.nodes[f"cfg_{entry.name}"]
        assert node.recipe.reference.info.qualname in {
            f.__name__ for f in (*forms.FORMS.values(), forms.all_of)}, entry.name
    assert {"seed", "max_atoms", "spacegroups", "repeat"} <= set(wf.cfg_sample_config.inputs)
    assert {"max_steps", "force_tolerance"} <= set(wf.cfg_full_relax.inputs)
    assert "radii" in wf.cfg_final_filter_first.inputs
    assert {"retries", "seed", "filter"} <= set(wf.cfg_perturb_config.inputs)


def test_knobs_are_inputs_of_the_workflow_and_run_without_warnings():
    wf = build_workflow(inputs=["formulas", "seed", "calculator"], **SMALL)
    assert list(wf.inputs) == ["formulas", "seed", "calculator"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = wf.run(formulas=FORMULAS, seed=5, calculator=Morse(epsilon=0.3))
    assert run.exception is None, run.exception
    assert not [w for w in caught if NO_INPUTS in str(w.message)]
    direct = run_macro(sample_config=SampleConfig(spacegroups=(221, 229), seed=5),
                       perturb_config=replace(pipeline.DEFAULT_PERTURB, seed=5),
                       calculator=Morse(epsilon=0.3))
    assert identity(run.outputs["training_set"]) == identity(direct["training_set"])
    other = wf.run(formulas=FORMULAS, seed=6, calculator=Morse(epsilon=0.3))
    assert identity(other.outputs["sampled"]) != identity(run.outputs["sampled"])


def test_the_executor_knob_feeds_the_macro_and_replaces_its_config():
    """An ``executor`` input is the macro's executor (no config node of its own) and a run
    with a serial executor given there equals the macro called directly."""
    small = {k: v for k, v in SMALL.items() if k != "executor"}
    wf = build_workflow(inputs=["formulas", "executor"], **small)
    assert list(wf.inputs) == ["formulas", "executor"]
    edges = json.loads(wf.recipe.model_dump_json())
    assert edges["input_edges"] == {"assyst.formulas": "formulas",
                                    "assyst.executor": "executor"}
    assert "assyst.executor" not in edges["edges"]
    assert not [n for n in wf.nodes if n.startswith("cfg_executor")]
    run = wf.run(formulas=FORMULAS, executor=Executor(kind="serial"))
    assert run.exception is None, run.exception
    assert identity(run.outputs["training_set"]) == identity(run_macro()["training_set"])
    with pytest.raises(KeyError, match="an input of"):
        set_config(wf, "executor", Executor(kind="serial"))


def test_formulas_default_to_an_input():
    wf = build_workflow(**SMALL)
    assert list(wf.inputs) == ["formulas"]
    run = wf.run(formulas=FORMULAS)
    assert run.exception is None
    assert identity(run.outputs["training_set"]) == identity(run_macro()["training_set"])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"formulas": FORMULAS, "inputs": ["formulas"]}, "not both"),
    ({"inputs": ["formulas", "temperature"]}, "not knobs"),
    ({"inputs": ["formulas", "calculator"], "calculator": EMT()}, "as config and as input"),
])
def test_bad_inputs_are_named(kwargs, message):
    with pytest.raises(TypeError, match=message):
        build_workflow(**kwargs)


def test_set_config_replaces_one_config_in_one_line():
    wf = build_workflow(FORMULAS, **SMALL)
    set_config(wf, "final_filter", DistanceFilter(1.2))
    assert not [n for n in wf.nodes if n.startswith("cfg_final_filter_")
                and "_constant_" not in n]  # the old & and its two filters are gone
    assert wf.cfg_final_filter.recipe.reference.info.qualname == "distance_filter"
    set_config(wf, "full_relax", FullRelax(max_steps=3))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", NO_INPUTS)
        run = wf.run()
    assert run.exception is None, run.exception
    direct = run_macro(final_filter=DistanceFilter(1.2), full_relax=FullRelax(max_steps=3))
    assert identity(run.outputs["training_set"]) == identity(direct["training_set"])
    with pytest.raises(KeyError, match="allowed"):
        set_config(wf, "relax", FullRelax())


def test_set_config_keeps_a_seed_input_connected():
    wf = build_workflow(inputs=["formulas", "seed"], **SMALL)
    set_config(wf, "sample_config", SampleConfig(spacegroups=(221,)))
    run = wf.run(formulas=FORMULAS, seed=2)
    assert run.exception is None, run.exception
    report = run.outputs["sample_report"]
    assert (report.n_in, report.n_candidates) == (2, 2)
    direct = run_macro(sample_config=SampleConfig(spacegroups=(221,), seed=2),
                       perturb_config=replace(pipeline.DEFAULT_PERTURB, seed=2))
    assert identity(run.outputs["training_set"]) == identity(direct["training_set"])


def test_set_config_gives_a_calculator_input_workflow_its_own_reference():
    wf = build_workflow(inputs=["formulas", "calculator"], **SMALL)
    assert "cfg_reference" not in wf.nodes  # the reference follows the calculator input
    set_config(wf, "reference", EMT())
    run = wf.run(formulas=FORMULAS, calculator=Morse(epsilon=0.3))
    assert run.exception is None, run.exception
    direct = run_macro(calculator=Morse(epsilon=0.3), reference=EMT())
    assert identity(run.outputs["training_set"]) == identity(direct["training_set"])
    with pytest.raises(KeyError, match="an input of"):
        set_config(wf, "calculator", EMT())


def test_volume_filter_without_maximum_is_unbounded():
    assert forms.volume_filter(maximum=None) == VolumeFilter(0.0, math.inf)
