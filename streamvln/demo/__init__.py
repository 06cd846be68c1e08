"""`streamvln demo` / `client`: episodes of the embedded simulator driven through the agent server,
and the live web page (see agent/serving/README.md for the map)."""
