"""Resume: results cached by content, bit-exact, atomically; a SIGKILLed run loses only what ran.

The kill tests start a real child process (``python -c``) that relaxes into a cache with a
calculator slowed down through the environment (so its config, and every uuid and key, equals
the reference's), kill it with SIGKILL in the middle of the stage and run again.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.constraints import FixAtoms
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pyiron_assyst.calculators import EMT
from pyiron_assyst.calculators.evaluation import Outcome
from pyiron_assyst.execution.cache import ResultCache, structure_key
from pyiron_assyst.execution.codec import CodecError, decode, encode
from pyiron_assyst.execution.dispatch import run_cached
from pyiron_assyst.execution.executors import Executor
from pyiron_assyst.execution.tasks import TaskError
from pyiron_assyst.stages.relax import _TASK_REVISION, FullRelax, PositionRelax, relax
from tests.support.resume import CONFIG, logged_emt, starts

REPO = Path(__file__).resolve().parents[1]
SERIAL = Executor(kind="serial")


def assert_identical(left: list[Atoms], right: list[Atoms]) -> None:
    """Bit for bit: arrays (with dtype), cell, pbc, info (with order) and every label."""
    assert len(left) == len(right)
    for a, b in zip(left, right):
        assert list(a.info.items()) == list(b.info.items())
        assert a.arrays.keys() == b.arrays.keys()
        for key in a.arrays:
            assert a.arrays[key].dtype == b.arrays[key].dtype
            assert a.arrays[key].tobytes() == b.arrays[key].tobytes(), key
        assert a.cell.array.tobytes() == b.cell.array.tobytes()
        assert np.array_equal(a.pbc, b.pbc)
        assert a.calc.results.keys() == b.calc.results.keys()
        for key, value in a.calc.results.items():
            assert type(value) is type(b.calc.results[key])
            assert np.asarray(value).tobytes() == np.asarray(b.calc.results[key]).tobytes()


def logged(path: Path) -> list[tuple[int, int, str]]:
    """``(pid, natoms, uuid)`` of every evaluation LoggedEMT logged to ``path``."""
    if not path.exists():
        return []
    rows = [line.split() for line in path.read_text().splitlines()]
    return [(int(pid), int(n), uuid) for pid, n, uuid in rows]


# ---------------------------------------------------------------------------- codec
finite_or_not = st.floats(allow_nan=True, allow_infinity=True, width=64)
arrays = hnp.arrays(st.sampled_from([np.float64, np.float32, np.int64, np.int32, np.bool_]),
                    hnp.array_shapes(min_dims=0, max_dims=3, max_side=4))


@settings(max_examples=60, deadline=None)
@given(value=st.recursive(
    st.none() | st.booleans() | st.integers() | finite_or_not | st.text() | arrays,
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=10))
def test_codec_round_trip_is_bit_exact(value):
    text = json.dumps(encode(value))  # through JSON text, as stored
    back = decode(json.loads(text))
    assert_same_value(value, back)


def assert_same_value(a, b):
    assert type(a) is type(b)
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype
        assert a.shape == b.shape
        assert a.tobytes() == b.tobytes()
    elif isinstance(a, float):
        assert np.float64(a).tobytes() == np.float64(b).tobytes() or (a != a and b != b)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same_value(x, y)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            assert_same_value(a[key], b[key])
    else:
        assert a == b


def test_codec_keeps_structures_outcomes_and_errors():
    (relaxed,), _ = relax(starts(1), PositionRelax(), EMT(), SERIAL)
    relaxed.arrays["initial_magmoms"] = np.linspace(0, 1, len(relaxed))
    outcome = Outcome(relaxed, "", "", 7, 0.125)
    back = decode(json.loads(json.dumps(encode(outcome))))
    assert isinstance(back, Outcome)
    assert (back.force_calls, back.calculator_time) == (7, 0.125)
    assert_identical([back.value], [relaxed])
    error = decode(encode(TaskError("TaskTimeout: no result", "trace", reason="timeout")))
    assert (str(error), error.traceback, error.reason) == ("TaskTimeout: no result", "trace",
                                                           "timeout")
    assert decode(encode(CONFIG)) == CONFIG
    constrained = bulk("Cu")
    constrained.set_constraint(FixAtoms([0]))
    with pytest.raises(CodecError, match="constraints"):
        encode(constrained)
    with pytest.raises(CodecError):
        encode(object())


def test_decoding_imports_only_allow_listed_classes():
    for path in ("os:system", "subprocess:Popen", "builtins:eval"):
        with pytest.raises(CodecError, match="not allowed"):
            decode({"@dataclass": path, "fields": {}})


# ---------------------------------------------------------------------------- keys
def test_any_changed_input_changes_the_key():
    atoms = starts(1)[0]
    base = structure_key(atoms, CONFIG.config_hash(), EMT().config_hash())
    assert base == structure_key(atoms.copy(), CONFIG.config_hash(), EMT().config_hash())
    moved = atoms.copy()
    moved.positions[0, 0] += 1e-12
    strained = atoms.copy()
    strained.cell[0, 0] += 1e-12
    other_pbc = atoms.copy()
    other_pbc.pbc = (True, True, False)
    other_element = atoms.copy()
    other_element.numbers[0] = 47
    magnetic = atoms.copy()
    magnetic.set_initial_magnetic_moments([1.0] * len(atoms))
    renamed = atoms.copy()
    renamed.info["uuid"] = "another"
    variants = [structure_key(a, CONFIG.config_hash(), EMT().config_hash())
                for a in (moved, strained, other_pbc, other_element, magnetic, renamed)]
    variants += [structure_key(atoms, FullRelax(trace=5, max_steps=61).config_hash(),
                               EMT().config_hash()),
                 structure_key(atoms, CONFIG.config_hash(), EMT(fixed_cutoff=False).config_hash())]
    assert len({base, *variants}) == len(variants) + 1


def test_relax_with_a_cache_is_bit_identical_and_misses_on_any_change(tmp_path, monkeypatch):
    log = tmp_path / "calls.log"
    monkeypatch.setenv("ASSYST_TEST_LOG", str(log))
    cache = ResultCache(tmp_path / "cache")
    structures = starts(4)
    plain, plain_report = relax(structures, CONFIG, logged_emt(), SERIAL)
    n_plain = len(logged(log))
    first, _ = relax(structures, CONFIG, logged_emt(), SERIAL, cache=cache)
    assert len(logged(log)) == 2 * n_plain
    again, again_report = relax(structures, CONFIG, logged_emt(), SERIAL, cache=cache)
    assert len(logged(log)) == 2 * n_plain  # all answered from the cache
    assert_identical(plain, first)
    assert_identical(plain, again)
    for field in ("n_in", "n_candidates", "n_out", "drops", "flagged", "force_calls"):
        assert getattr(plain_report, field) == getattr(again_report, field)
    # one atom moved by 1e-12 Å: that structure only is computed again
    moved = [s.copy() for s in structures]
    moved[2].positions[0, 1] += 1e-12
    relax(moved, CONFIG, logged_emt(), SERIAL, cache=cache)
    assert {u for _, _, u in logged(log)[2 * n_plain:]} == {moved[2].info["uuid"]}
    # another config field or calculator parameter: everything is computed again
    for config, calculator in ((FullRelax(trace=5, max_steps=61), logged_emt()),
                               (CONFIG, logged_emt(fail_natoms=99))):
        before = len(logged(log))
        relax(structures, config, calculator, SERIAL, cache=cache)
        assert {u for _, _, u in logged(log)[before:]} == {s.info["uuid"] for s in structures}


def test_failures_are_cached_and_retried_only_when_asked(tmp_path, monkeypatch):
    log = tmp_path / "calls.log"
    monkeypatch.setenv("ASSYST_TEST_LOG", str(log))
    flag = tmp_path / "fail"
    flag.touch()
    flaky = logged_emt(fail_natoms=2, fail_flag=str(flag))
    cache = ResultCache(tmp_path / "cache")
    structures = starts(4)  # 1, 2, 3, 4 atoms
    _, report = relax(structures, PositionRelax(), flaky, SERIAL, cache=cache)
    assert report.drop_counts() == {"calculator_error": 1}
    flag.unlink()  # the calculator would work now, but a stored failure is not retried ...
    before = len(logged(log))
    outs, again = relax(structures, PositionRelax(), flaky, SERIAL, cache=cache)
    assert len(logged(log)) == before
    assert again.drops == report.drops
    assert len(outs) == 3
    namespace = cache.namespace("relax:position")
    assert [e.reason for e in namespace.failures().values()] == ["calculator_error"]
    # ... unless asked: only the failed structure is computed
    outs, retried = relax(structures, PositionRelax(), flaky, SERIAL, cache=cache,
                          retry_failed=True)
    assert {(n, u) for _, n, u in logged(log)[before:]} == {(2, structures[1].info["uuid"])}
    assert retried.drops == ()
    assert len(outs) == 4
    assert namespace.failures() == {}


def test_corrupt_or_foreign_entries_are_computed_again_with_a_warning(tmp_path, caplog):
    cache = ResultCache(tmp_path)
    structures = starts(3)
    reference, _ = relax(structures, PositionRelax(), EMT(), SERIAL, cache=cache)
    namespace = cache.namespace("relax:position")
    files = sorted(namespace.directory.glob("??/*.json"))
    files[0].write_text(files[0].read_text()[:50])  # truncated
    files[1].write_text(json.dumps({"format": "something else"}))  # foreign
    data = json.loads(files[2].read_text())
    data["value"] = {"@dataclass": "os:system", "fields": {"command": "touch pwned"}}
    files[2].write_text(json.dumps(data))  # code it must not run
    with caplog.at_level(logging.WARNING, logger="pyiron_assyst.execution.cache"):
        again, _ = relax(structures, PositionRelax(), EMT(), SERIAL, cache=cache)
    assert_identical(reference, again)
    assert not (tmp_path / "pwned").exists()
    assert not Path("pwned").exists()
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert all(str(f) in warned for f in files)
    assert all(namespace.get(f.name[:-5]) is not None for f in files)  # rewritten


def test_run_cached_keeps_results_as_they_complete(tmp_path):
    cache = ResultCache(tmp_path)
    keys = [f"{i:040x}" for i in range(6)]
    results, stats = run_cached(_square_or_fail, list(range(6)), keys,
                                Executor(kind="process", max_workers=2, chunk_size=1), cache)
    assert results[:3] == [0, 1, 4]
    assert isinstance(results[3], TaskError)
    assert (stats.hits, stats.computed) == (0, 6)
    again, stats = run_cached(_square_or_fail, list(range(6)), keys, SERIAL, cache)
    assert again[:3] == results[:3]
    assert str(again[3]) == str(results[3])
    assert (stats.hits, stats.failed_hits, stats.computed) == (5, 1, 0)
    (manifest,) = cache.manifests()
    assert (manifest.total, manifest.done, manifest.failed) == (6, 5, 1)


def _square_or_fail(x: int) -> int:
    if x == 3:
        raise ValueError("three")
    return x * x


# ---------------------------------------------------------------------------- real kills
CHILD = """
import sys
from pyiron_assyst.core.config import register_import_prefix
register_import_prefix("tests")
from pyiron_assyst.execution.cache import ResultCache
from pyiron_assyst.execution.codec import encode
from pyiron_assyst.execution.executors import Executor
from pyiron_assyst.stages.relax import relax
from tests.support.resume import CONFIG, logged_emt, starts
if __name__ == "__main__":
    executor = Executor(kind=sys.argv[2], max_workers=2, chunk_size=1)
    out, report = relax(starts(), CONFIG, logged_emt(), executor, cache=ResultCache(sys.argv[1]))
    if len(sys.argv) > 3:
        import json
        with open(sys.argv[3], "w") as f:
            json.dump(encode(out), f)
"""


def child(cache: Path, kind: str, log: Path, delay: float, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "ASSYST_TEST_LOG": str(log), "ASSYST_TEST_DELAY": str(delay),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(cache), kind, *extra], env=env,
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigkilled_relax_resumes_with_only_unfinished_work(tmp_path, monkeypatch):
    cache = ResultCache(tmp_path / "cache")
    namespace = cache.namespace(CONFIG.step)
    log = tmp_path / "killed.log"
    process = child(cache.directory, "process", log, 0.01)
    try:
        wait_for(lambda: len(namespace.listing()[0]) >= 2 or process.poll() is not None, 120,
                 "two finished relaxations")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()
    done = namespace.listing()[0]
    assert 2 <= len(done) < 8
    # every entry is whole (atomic writes), and the orphaned workers have stopped
    assert all(namespace.get(key) is not None for key in done)
    workers = {pid for pid, _, _ in logged(log)} - {process.pid}
    assert workers
    wait_for(lambda: not any(alive(pid) for pid in workers), 10, "orphaned workers to exit")
    # run again: exactly the structures without an entry are computed, nothing else
    rerun_log = tmp_path / "rerun.log"
    monkeypatch.setenv("ASSYST_TEST_LOG", str(rerun_log))
    resumed, resumed_report = relax(starts(), CONFIG, logged_emt(), SERIAL, cache=cache)
    monkeypatch.delenv("ASSYST_TEST_LOG")
    keys = {s.info["uuid"]: structure_key(s, _TASK_REVISION, CONFIG.config_hash(),
                                          logged_emt().config_hash()) for s in starts()}
    recomputed = {u for _, _, u in logged(rerun_log)}
    assert recomputed == {u for u, k in keys.items() if k not in done}
    calls = sum(s.info["force_calls"] for s in resumed
                if s.info["step"] == CONFIG.step and s.info["parent"] in recomputed)
    assert len(logged(rerun_log)) == calls
    # and the result is that of an uninterrupted run
    reference, reference_report = relax(starts(), CONFIG, logged_emt(), SERIAL)
    assert_identical(reference, resumed)
    for field in ("n_in", "n_candidates", "n_out", "drops", "flagged", "force_calls"):
        assert getattr(reference_report, field) == getattr(resumed_report, field)


@pytest.mark.slow
def test_two_processes_filling_one_cache_agree(tmp_path):
    cache = tmp_path / "cache"
    outputs = [tmp_path / f"out{i}.json" for i in range(2)]
    processes = [child(cache, "serial", tmp_path / f"{i}.log", 0.0, str(out))
                 for i, out in enumerate(outputs)]
    for process in processes:
        assert process.wait(300) == 0, process.stderr.read().decode()
    reference, _ = relax(starts(), CONFIG, logged_emt(), SERIAL)
    for out in outputs:
        assert_identical(reference, decode(json.loads(out.read_text())))
    namespace = ResultCache(cache).namespace(CONFIG.step)
    done, failed = namespace.listing()
    assert len(done) == 8
    assert not failed
    assert all(namespace.get(key) is not None for key in done)
    assert not list(namespace.directory.glob("??/.*"))  # no temporary files left
