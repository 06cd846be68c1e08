"""Simulator backends, the VLN task, episodes, expert and metrics.

Importing envs registers the gymnasium environment `streamvln/VLN-v0` (envs.gym_env.VLNEnv); the
entry point is a string, so nothing heavy is imported until gymnasium.make is called.
"""


def _register_gym_env() -> None:
    import gymnasium

    if "streamvln/VLN-v0" not in gymnasium.registry:
        gymnasium.register(id="streamvln/VLN-v0", entry_point="envs.gym_env:VLNEnv")


_register_gym_env()
