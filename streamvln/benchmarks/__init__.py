"""One module per `streamvln bench TARGET`; each exposes NAME, HELP, add_arguments(parser) and
run(args) -> dict (the JSON the benchmark prints).

NAME, HELP and add_arguments are read while the CLI builds its parser, so a benchmark module's top
level imports the standard library only; heavy packages are imported inside run() and its helpers
(tests/test_cli_imports.py enforces this)."""
