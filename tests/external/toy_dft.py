"""A tiny stand-in for a DFT code: an external program, started per evaluation by its launcher.

Usage: ``[srun -n N | mpirun -np N] python toy_dft.py INPUT OUTPUT``

It reads ``INPUT`` (JSON: ``numbers``, ``positions`` (Å), ``cell`` (Å), ``pbc``, the
Lennard-Jones ``sigma`` (Å), ``epsilon`` (eV), ``rc`` (Å), and optional ``call`` and
``marker_dir``) and writes ``OUTPUT`` (JSON: ``energy`` and ``free_energy`` (eV), ``forces``
(eV/Å), ``stress`` (eV/Å³, Voigt xx yy zz yz xz xy, ASE sign; 3-D periodic cells only)).

The physics is ASE's non-smooth Lennard-Jones (pair energy shifted to zero at ``rc``), summed
over all periodic images within ``rc``, in plain Python (standard library only, so that
starting the program costs milliseconds, as a compiled code would).

Like an MPI program it runs as several ranks when its launcher starts several: the rank is
``SLURM_PROCID`` (srun), ``OMPI_COMM_WORLD_RANK`` (Open MPI) or ``PMI_RANK`` (MPICH), else 0.
Every rank computes, only rank 0 writes ``OUTPUT``, and, if the input names a ``marker_dir``,
every rank writes ``<marker_dir>/<call>.rank<rank>.json`` saying who it was (rank, number of
ranks, SLURM job and step, pid), so that a test can see how many ranks ran per evaluation.
"""

from __future__ import annotations

import json
import math
import os
import sys

_RANK_VARIABLES = ("SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK")
_SIZE_VARIABLES = ("SLURM_STEP_NUM_TASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")

Vector = list[float]


def _env_int(names: tuple[str, ...], default: int) -> int:
    for name in names:
        if name in os.environ:
            return int(os.environ[name])
    return default


def _inverse_transpose(cell: list[Vector]) -> list[Vector]:
    """Rows are the reciprocal vectors b_k (without 2π) of a full-rank cell: a_i · b_k = δ_ik."""
    (a, b, c) = cell
    cross = [[b[1] * c[2] - b[2] * c[1], b[2] * c[0] - b[0] * c[2], b[0] * c[1] - b[1] * c[0]],
             [c[1] * a[2] - c[2] * a[1], c[2] * a[0] - c[0] * a[2], c[0] * a[1] - c[1] * a[0]],
             [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]]
    volume = sum(a[i] * cross[0][i] for i in range(3))
    return [[x / volume for x in row] for row in cross]


def _image_ranges(cell: list[Vector], pbc: list[bool], rc: float) -> list[range]:
    """Image shifts per direction that can hold a neighbour within ``rc`` (Å)."""
    if not any(pbc):
        return [range(1)] * 3
    reciprocal = _inverse_transpose(cell)
    ranges = []
    for k in range(3):
        if not pbc[k]:
            ranges.append(range(1))
            continue
        n = math.ceil(rc * math.sqrt(sum(x * x for x in reciprocal[k])))
        ranges.append(range(-n, n + 1))
    return ranges


def lennard_jones(data: dict) -> dict:
    """Energy (eV), forces (eV/Å) and, for 3-D periodic cells, stress (eV/Å³) of ``data``."""
    positions, cell, pbc = data["positions"], data["cell"], data["pbc"]
    sigma, epsilon, rc = data["sigma"], data["epsilon"], data["rc"]
    e0 = 4 * epsilon * ((sigma / rc) ** 12 - (sigma / rc) ** 6)
    n = len(positions)
    energy = 0.0
    forces = [[0.0, 0.0, 0.0] for _ in range(n)]
    virial = [[0.0] * 3 for _ in range(3)]
    ranges = _image_ranges(cell, pbc, rc)
    shifts = [[i * cell[0][x] + j * cell[1][x] + k * cell[2][x] for x in range(3)]
              for i in ranges[0] for j in ranges[1] for k in ranges[2]]
    for i in range(n):
        for j in range(n):
            for shift in shifts:
                d = [positions[j][x] + shift[x] - positions[i][x] for x in range(3)]
                r2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
                if r2 == 0.0 or r2 >= rc * rc:
                    continue
                s6 = (sigma * sigma / r2) ** 3
                energy += 0.5 * (4 * epsilon * (s6 * s6 - s6) - e0)
                du = -24 * epsilon * (2 * s6 * s6 - s6) / r2  # (du/dr) / r
                for x in range(3):
                    forces[i][x] += du * d[x]
                    for y in range(3):
                        virial[x][y] += 0.5 * du * d[x] * d[y]
    result = {"energy": energy, "free_energy": energy, "forces": forces}
    if all(pbc):
        volume = abs(sum(cell[0][x] * c for x, c in enumerate(
            [cell[1][1] * cell[2][2] - cell[1][2] * cell[2][1],
             cell[1][2] * cell[2][0] - cell[1][0] * cell[2][2],
             cell[1][0] * cell[2][1] - cell[1][1] * cell[2][0]])))
        voigt = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
        result["stress"] = [virial[x][y] / volume for x, y in voigt]
    return result


def _write_marker(data: dict, rank: int) -> None:
    directory = data.get("marker_dir")
    if not directory:
        return
    marker = {"rank": rank, "size": _env_int(_SIZE_VARIABLES, 1), "pid": os.getpid(),
              "job": os.environ.get("SLURM_JOB_ID"), "step": os.environ.get("SLURM_STEP_ID")}
    path = os.path.join(directory, f"{data.get('call', 'call')}.rank{rank}.json")
    with open(path + ".tmp", "w") as handle:
        json.dump(marker, handle)
    os.replace(path + ".tmp", path)


def main(argv: list[str]) -> int:
    """Run the program: ``argv`` is ``[INPUT, OUTPUT]``."""
    if len(argv) != 2:
        sys.stderr.write("usage: toy_dft.py INPUT OUTPUT\n")
        return 2
    with open(argv[0]) as handle:
        data = json.load(handle)
    rank = _env_int(_RANK_VARIABLES, 0)
    result = lennard_jones(data)  # every rank computes (the toy has nothing to distribute)
    _write_marker(data, rank)
    if rank == 0:
        with open(argv[1] + ".tmp", "w") as handle:
            json.dump(result, handle)
        os.replace(argv[1] + ".tmp", argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
