"""Helpers shared by the test modules (calculators that fail on purpose, the local SLURM
cluster, small labelled data sets, relaxers written for the tests); no test lives here."""
