"""A project directory: saved pipeline runs, one HDF5 file per stage.

Layout (everything inside the directory; nothing is written elsewhere)::

    <project>/
        pyiron_assyst_project.json   marker: format and version of the project
        .lock                        write lock (see :mod:`.locking`)
        runs/<run>/run.h5            recipe, configs, reports, versions, timings, stage list
        runs/<run>/stages/stage000_sampled.h5, stage001_volume_relaxed.h5, ...   per stage

Stage file names are valid pyiron object names (a letter first, then letters, digits and
``_``), so ``pyiron_base.Project(path)["runs/<run>/stages/stage000_sampled"]`` opens one (runs
saved before were named ``000_<stage>.h5``; they still load).

A run is written into a hidden temporary directory (``runs/.tmp-<token>``) and renamed into
place as a whole, under the project's write lock: a reader sees a complete run or none, a
killed writer leaves only a temporary directory that the next writer removes. Loading one
stage opens ``run.h5`` and that stage's file only. Configs are JSON reloaded through
:func:`~pyiron_assyst.core.config.config_from_json` (allow-listed imports only); nothing is
unpickled or executed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import time
import uuid as _uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ase import Atoms

from pyiron_assyst.core.config import Config, ConfigError, NotPersistableError, config_from_json
from pyiron_assyst.core.report import StageReport
from pyiron_assyst.storage.columnar import column_kind, columns_to_structures, structures_to_columns
from pyiron_assyst.storage.errors import StorageError
from pyiron_assyst.storage.files import atomic_path, fsync_dir, inside
from pyiron_assyst.storage.hdf5 import (
    read_table,
    read_texts,
    valid_name,
    write_table,
    write_texts,
)
from pyiron_assyst.storage.locking import project_lock
from pyiron_assyst.storage.tables import (
    LINEAGE_COLUMNS,
    LineageIndex,
    lineage_index,
    stage_frame,
    walk,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["VERSIONED_PACKAGES", "Project", "check_run_name", "package_versions", "slug"]

PROJECT_FILE = "pyiron_assyst_project.json"
PROJECT_FORMAT = {"format": "pyiron_assyst.project", "format_version": 1}
RUN_FILE = "run.h5"
VERSIONED_PACKAGES = ("pyiron_assyst", "ase", "numpy", "pyxtal", "spglib", "pyiron_workflow",
                      "flowrep", "pyiron_base", "h5py", "pandas", "executorlib")
"""Packages whose installed versions are recorded with every run."""
_RUN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
_STAGE_FILE = re.compile(r"stages/(stage)?[0-9]{3,}_[A-Za-z0-9_.-]*\.h5")
_READ_ATTEMPTS = 5
"""Times a reader re-reads a stage whose run a writer replaced while it was reading."""
_SWAP_WAIT = 5.0
"""Seconds a reader waits for a run that a writer is replacing (between two renames)."""


def package_versions() -> dict[str, str | None]:
    """Installed versions of :data:`VERSIONED_PACKAGES` (``None`` if not installed) and
    Python, read from package metadata (nothing is imported)."""
    versions: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def check_run_name(name: object) -> str:
    """``name`` if it can name a run, else :class:`StorageError`; check before anything is
    created.

    A run name has letters, digits and the characters underscore, dot, plus and minus, and
    does not start with a dot.
    """
    if not (isinstance(name, str) and _RUN_NAME.fullmatch(name)):
        raise StorageError(f"invalid run name {name!r}: use letters, digits and '_.+-', "
                           "starting with a letter, digit or '_'")
    return name


def slug(text: str) -> str:
    """``text`` as a safe file-name part, at most 60 characters long.

    Runs of characters other than letters, digits, underscore, dot and minus become one
    underscore, and so does a leading dot.
    """
    return re.sub(r"^\.|[^A-Za-z0-9_.-]+", "_", text)[:60]


def _config_texts(configs: Mapping[str, Config]) -> dict[str, str]:
    texts = {}
    for name, config in configs.items():
        try:
            texts[name] = config.to_json()
        except (NotPersistableError, AttributeError) as error:
            raise StorageError(f"config {name!r} cannot be stored: {error}") from None
    return texts


def _report_texts(reports: Mapping[str, StageReport]) -> dict[str, str]:
    for name, report in reports.items():
        if not isinstance(report, StageReport):
            raise StorageError(f"report {name!r} is a {type(report).__name__}, not a StageReport")
    return {name: report.to_json() for name, report in reports.items()}


def _identity(path: Path) -> tuple[int, int] | None:
    """Device and inode of ``path`` (``None`` if it does not exist): tells one version of a
    file from the next that a writer renamed into its place."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


class Project:
    """A directory holding saved runs (created if missing).

    Parameters
    ----------
    path
        The project directory. An existing non-empty directory must be a project.
    create
        Create the project if ``path`` does not exist (else raise :class:`StorageError`).
    lock_timeout
        Seconds a writer waits for another process's write to finish before it gives up with
        a :class:`StorageError`.
    """

    def __init__(self, path: str | Path, *, create: bool = True,
                 lock_timeout: float = 60.0) -> None:
        self.path = Path(path).absolute()
        self.lock_timeout = lock_timeout
        self._lineage: dict[tuple[str, str], LineageIndex] = {}
        marker = self.path / PROJECT_FILE
        if not marker.is_file():
            if not create:
                raise StorageError("not a pyiron_assyst project (no project file)", self.path)
            self._create()
        self._check_marker(marker)

    def __repr__(self) -> str:
        return f"Project({str(self.path)!r})"

    def _create(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise StorageError("cannot create a project: path is a file", self.path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as error:  # a parent is a file, no permission, read-only file system
            raise StorageError(f"cannot create the project directory: {error.strerror}",
                               error.filename or self.path) from None
        with self.lock():
            if (self.path / PROJECT_FILE).is_file():
                return
            foreign = [p.name for p in self.path.iterdir() if p.name != ".lock"]
            if foreign:
                raise StorageError(f"directory is not empty and not a pyiron_assyst project "
                                   f"(contains {sorted(foreign)[:5]})", self.path)
            (self.path / "runs").mkdir()
            with atomic_path(self.path / PROJECT_FILE) as tmp:
                tmp.write_text(json.dumps(PROJECT_FORMAT))

    def _check_marker(self, marker: Path) -> None:
        try:
            found = json.loads(marker.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise StorageError(f"unreadable project file: {error}", marker) from None
        if found != PROJECT_FORMAT:
            raise StorageError(f"unsupported project file {found!r}, expected {PROJECT_FORMAT}",
                               marker)

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Context manager holding this project's write lock (see :mod:`.locking`)."""
        return project_lock(self.path / ".lock", self.lock_timeout)

    @property
    def _runs(self) -> Path:
        return self.path / "runs"

    def runs(self) -> list[str]:
        """Names of the complete runs, sorted."""
        return sorted(p.name for p in self._runs.iterdir()
                      if not p.name.startswith(".") and (p / RUN_FILE).is_file())

    # ------------------------------------------------------------------ writing

    def save_run(self, name: str, *, recipe_json: str | None = None,
                 configs: Mapping[str, Config] | None = None,
                 stages: Mapping[str, Sequence[Atoms]] | None = None,
                 reports: Mapping[str, StageReport] | None = None,
                 timings: Mapping[str, float] | None = None, overwrite: bool = False) -> Path:
        """Store one pipeline run atomically; returns its directory.

        Parameters
        ----------
        name
            Run name: letters, digits, ``_ . + -``, not starting with ``.``.
        recipe_json
            The workflow recipe (e.g. ``recipe.model_dump_json()``), stored verbatim.
        configs
            Configs by name, stored as their ``to_json()`` text.
        stages
            Output structures by stage name, each stage in its own HDF5 file.
        reports
            The :class:`StageReport` of each stage (drops with reasons, timings).
        timings
            Further timings in s (e.g. ``{"total": 12.3}``); stage wall and calculator times
            are taken from the reports, and the time to write the structures is added.
        overwrite
            Replace an existing run of that name (atomically).

        Raises
        ------
        StorageError
            Invalid name, a config that cannot be stored, an existing run without
            ``overwrite``, or the project locked by another writer beyond ``lock_timeout``.
        """
        check_run_name(name)
        texts = {"configs": _config_texts(configs or {}),
                 "reports": _report_texts(reports or {})}
        bad = [n for n in (*texts["configs"], *texts["reports"], *(stages or {}))
               if not valid_name(n)]
        if bad:
            raise StorageError(f"config / stage names must be non-empty without '/': {bad}")
        with self.lock():
            self._clean_up()
            target = self._runs / name
            if target.exists() and not overwrite:
                raise StorageError(f"run {name!r} exists (pass overwrite=True to replace it)",
                                   target)
            token = _uuid.uuid4().hex
            tmp = self._runs / f".tmp-{token}"
            try:
                (tmp / "stages").mkdir(parents=True)
                start = time.perf_counter()
                stage_list = [self._write_stage(tmp, i, stage, structures, token)
                              for i, (stage, structures) in enumerate((stages or {}).items())]
                meta = self._meta(name, token, stage_list, reports or {}, timings or {},
                                  time.perf_counter() - start)
                texts["run"] = {"meta": json.dumps(meta)}
                if recipe_json is not None:
                    texts["run"]["recipe"] = recipe_json
                write_texts(tmp / RUN_FILE, texts, attrs={"run_token": token})
                self._swap_in(tmp, target, token)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return target

    @staticmethod
    def _write_stage(run_dir: Path, i: int, stage: str, structures: Sequence[Atoms],
                     token: str) -> dict[str, Any]:
        columns = structures_to_columns(structures)
        file = f"stages/stage{i:03d}_{re.sub('[^A-Za-z0-9_]+', '_', stage)[:60]}.h5"
        write_table(run_dir / file, columns, attrs={"stage": stage, "run_token": token})
        return {"name": stage, "file": file, "n_structures": len(columns["length"]),
                "n_atoms": int(columns["length"].sum()),
                "skipped_keys": columns["skipped_keys"].tolist()}

    @staticmethod
    def _meta(name: str, token: str, stage_list: list[dict[str, Any]],
              reports: Mapping[str, StageReport], timings: Mapping[str, float],
              save_seconds: float) -> dict[str, Any]:
        return {
            "name": name, "run_token": token, "created": datetime.now(UTC).isoformat(),
            "stages": stage_list, "versions": package_versions(),
            "timings": {
                "stages": {k: {"wall_time": r.wall_time, "calculator_time": r.calculator_time}
                           for k, r in reports.items()},
                "user": {k: float(v) for k, v in timings.items()},
                "write_structures": save_seconds,
            },
        }

    def _swap_in(self, tmp: Path, target: Path, token: str) -> None:
        if target.exists():
            trash = self._runs / f".trash-{token}-{target.name}"
            os.rename(target, trash)
            os.rename(tmp, target)
            fsync_dir(self._runs)
            shutil.rmtree(trash)
        else:
            os.rename(tmp, target)
            fsync_dir(self._runs)
        self._lineage = {k: v for k, v in self._lineage.items() if k[0] != target.name}

    def _clean_up(self) -> None:
        """Remove what killed writers left behind (call with the lock held)."""
        for entry in self._runs.iterdir():
            if entry.name.startswith(".tmp-"):
                shutil.rmtree(entry, ignore_errors=True)
            elif entry.name.startswith(".trash-"):
                original = self._runs / entry.name[len(".trash-") + 33:]
                if original.exists():
                    shutil.rmtree(entry, ignore_errors=True)
                else:  # killed between the two renames of an overwrite: restore the old run
                    os.rename(entry, original)

    # ------------------------------------------------------------------ reading

    def _swapping(self, run: str) -> bool:
        """Whether a writer is between the two renames of replacing ``run``."""
        return any(p.name.startswith(".trash-") and p.name[len(".trash-") + 33:] == run
                   for p in self._runs.iterdir())

    def _run_texts(self, run: str) -> dict[str, dict[str, str]]:
        path = self._runs / run / RUN_FILE
        if not isinstance(run, str) or not _RUN_NAME.fullmatch(run):
            raise StorageError(f"no run {run!r} in this project (runs: {self.runs()})", self.path)
        deadline = time.monotonic() + _SWAP_WAIT
        while True:
            while not path.is_file() and self._swapping(run) and time.monotonic() < deadline:
                time.sleep(0.005)
            before = _identity(path)
            try:
                texts, _ = read_texts(path)
                break
            except StorageError:
                # a writer renamed the run away (or swapped a new one in) between the check
                # and the read: read the new version; a damaged file fails at once
                if time.monotonic() < deadline and (
                        self._swapping(run) or _identity(path) != before):
                    continue
                if path.is_file() or self._swapping(run):
                    raise
                raise StorageError(f"no run {run!r} in this project (runs: {self.runs()})",
                                   self.path) from None
        if "meta" not in texts.get("run", {}):
            raise StorageError("run file has no metadata", path)
        return texts

    def run_info(self, run: str) -> dict[str, Any]:
        """Metadata of a run: ``name``, ``created`` (UTC), ``run_token``, ``stages`` (name,
        file, counts, skipped keys), ``versions`` and ``timings`` (s)."""
        path = self._runs / run / RUN_FILE
        try:
            info = json.loads(self._run_texts(run)["run"]["meta"])
        except json.JSONDecodeError as error:
            raise StorageError(f"run metadata is not valid JSON: {error}", path) from None
        stages = info.get("stages") if isinstance(info, dict) else None
        if not isinstance(stages, list) or not all(
                isinstance(s, dict) and isinstance(s.get("name"), str) and valid_name(s["name"])
                for s in stages):
            raise StorageError("run metadata lists invalid stages (names must be non-empty "
                               f"without '/'): {stages!r}"[:300], path)
        return info

    def stages(self, run: str) -> list[str]:
        """Stage names of a run, in the order they were saved."""
        return [s["name"] for s in self.run_info(run)["stages"]]

    def _stage_file(self, run: str, stage: str) -> tuple[Path, str]:
        info = self.run_info(run)
        for entry in info["stages"]:
            if entry["name"] == stage:
                file = entry.get("file")
                if not (isinstance(file, str) and _STAGE_FILE.fullmatch(file)):
                    raise StorageError(f"stage {stage!r} names the file {file!r}, not "
                                       "'stages/<number>_<name>.h5'", self._runs / run / RUN_FILE)
                return inside(self._runs / run, file, "stage file"), info["run_token"]
        raise StorageError(f"run {run!r} has no stage {stage!r} (stages: "
                           f"{[s['name'] for s in info['stages']]})", self._runs / run)

    def _read_stage(self, run: str, stage: str, select: Any = None) -> dict[str, Any]:
        for attempt in range(_READ_ATTEMPTS):
            path, token = self._stage_file(run, stage)
            try:
                return read_table(path, select, expect={"run_token": token, "stage": stage})
            except StorageError:
                # a writer swapped a new version of the run in between: read that one
                if attempt + 1 == _READ_ATTEMPTS or self.run_info(run)["run_token"] == token:
                    raise
        raise AssertionError("unreachable")

    def load_stage(self, run: str, stage: str) -> list[Atoms]:
        """The structures of one stage (only that stage's file is read), bit-identical to
        what was saved, labelled ones with a ``SinglePointCalculator``."""
        return columns_to_structures(self._read_stage(run, stage))

    def stage_table(self, run: str, stage: str) -> pd.DataFrame:
        """One row per structure of a stage, without building ``Atoms``; see
        :func:`.tables.stage_frame` for the columns."""
        return stage_frame(self._read_stage(run, stage, lambda n: column_kind(n) == "chunk"))

    def _json_configs(self, run: str, group: str) -> dict[str, Any]:
        out = {}
        for name, text in self._run_texts(run)[group].items():
            try:
                out[name] = config_from_json(text)
            except (ConfigError, TypeError) as error:
                raise StorageError(f"{group[:-1]} {name!r} cannot be loaded: {error}",
                                   self._runs / run / RUN_FILE) from None
        return out

    def load_configs(self, run: str) -> dict[str, Config]:
        """The configs of a run, rebuilt from JSON (allow-listed classes only)."""
        return self._json_configs(run, "configs")

    def load_reports(self, run: str) -> dict[str, StageReport]:
        """The :class:`StageReport` of every stage of a run."""
        return self._json_configs(run, "reports")

    def load_recipe(self, run: str) -> str | None:
        """The workflow recipe JSON text of a run (``None`` if none was saved)."""
        return self._run_texts(run)["run"].get("recipe")

    def lineage(self, run: str, uuid: str) -> list[tuple[str, str | None]]:
        """``(uuid, step)`` from the structure ``uuid`` back to its root, across all stages
        of the run (step ``None`` for an ancestor stored in no stage).

        Reads only the uuid / parent / step / ancestry columns of each stage (cached).

        Raises
        ------
        KeyError
            If no stage of the run holds a structure ``uuid``.
        """
        info = self.run_info(run)
        key = (run, info["run_token"])
        if key not in self._lineage:
            self._lineage[key] = lineage_index(
                self._read_stage(run, s["name"], LINEAGE_COLUMNS) for s in info["stages"])
        return walk(self._lineage[key], uuid)
