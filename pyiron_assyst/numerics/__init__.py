"""Numerics with no knowledge of stages: periodic distances, the default optimizer, the cell
filter."""
