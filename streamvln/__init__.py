"""Composition root: the `streamvln` command line and end-to-end pipelines that wire envs/,
rollout/, training/ and agent/ together. The four packages hold no CLI code."""
