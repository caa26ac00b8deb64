"""Driver of one MACE training run in a fresh process: ``python -m
pyiron_assyst.fitting._mace_train``.

Fixes everything that makes a CPU fit differ between two runs on one machine before MACE's own
training entry point (:func:`mace.cli.run_train.run`) starts: the number of torch threads
(``--threads``, also inter-op), deterministic algorithms and a fixed hash seed. MACE itself
seeds Python, numpy and torch from its ``--seed`` and its data loaders from seeded generators.
All other arguments are passed to MACE unchanged.
"""

from __future__ import annotations

import os
import signal
import sys


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM to this process when its parent dies, so that a killed fit
    leaves no training running (no-op elsewhere)."""
    parent = os.getppid()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> None:
    """Parse ``--threads N`` off ``argv`` and run MACE's training with the rest."""
    _die_with_parent()
    args = list(sys.argv[1:] if argv is None else argv)
    threads = 1
    if "--threads" in args:
        index = args.index("--threads")
        threads = int(args[index + 1])
        del args[index:index + 2]
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)
    import torch

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(threads)
    torch.use_deterministic_algorithms(True)
    from mace.cli.run_train import run
    from mace.tools import build_default_arg_parser

    run(build_default_arg_parser().parse_args(args))


if __name__ == "__main__":
    main()
