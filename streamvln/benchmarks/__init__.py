"""One module per `streamvln bench TARGET`; each exposes NAME, HELP, add_arguments(parser) and
run(args) -> dict (the JSON the benchmark prints)."""
