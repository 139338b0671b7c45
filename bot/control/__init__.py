"""Operator control: the command core, its HTTP API and the CLI's rendering."""
