"""The main job (`streamvln run`): stages, evaluation runs and the report."""
