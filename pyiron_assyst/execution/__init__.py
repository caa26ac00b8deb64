"""How expensive work runs: executors as data, killable worker pools, the content cache."""
