"""The pyiron_workflow layer: thin nodes over the stages, the canonical macro, cost planning."""
