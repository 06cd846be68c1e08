"""Embedded procedural houses."""
