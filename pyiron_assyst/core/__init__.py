"""The data model every layer shares: configs, lineage, ``Atoms.info`` keys, stage reports."""
