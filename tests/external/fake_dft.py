#!/usr/bin/env python3
"""A fake DFT executable: records its input files, command line and MPI rank, then fails.

Every call makes ``$FAKE_DFT_RECORD/<launcher pid>-rank<r>/`` (all ranks of one call share their
parent, the launcher or the shell) with copies of the input files ASE wrote
into the working directory (``INCAR``, ``KPOINTS``, ``POSCAR``, ``espresso.pwi``) and
``argv.json``; it prints ``$FAKE_DFT_ERROR`` (the real code's error text) and exits 1.
"""

import json
import os
import sys
from pathlib import Path

INPUTS = ("INCAR", "KPOINTS", "POSCAR", "espresso.pwi")

if __name__ == "__main__":
    rank = os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("PMI_RANK", "0"))
    record = Path(os.environ["FAKE_DFT_RECORD"])
    record.mkdir(parents=True, exist_ok=True)
    target = record / f"{os.getppid()}-rank{rank}"
    target.mkdir()
    for name in INPUTS:
        if Path(name).is_file():
            (target / name).write_text(Path(name).read_text())
    (target / "argv.json").write_text(json.dumps(sys.argv))
    print(os.environ.get("FAKE_DFT_ERROR", "fake DFT: nothing computed"), flush=True)
    sys.exit(1)
