"""Fitting a potential on a labelled set (MACE) and the transferability report."""
