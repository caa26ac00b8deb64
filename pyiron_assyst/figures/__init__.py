"""Pictures of a training set and of the stage counts, and writing them into a project."""
