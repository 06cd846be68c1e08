"""One module per top-level command group; each exposes `register(subparsers)`.

A command module's top level imports the standard library only (plus streamvln.cli_defaults and
other modules that import nothing heavy); torch, numpy, numba, zmq, envs, agent, rollout, ... are
imported inside the handler that needs them, so building the parser stays fast and works on
machines that lack some packages. tests/test_cli_imports.py enforces this."""
