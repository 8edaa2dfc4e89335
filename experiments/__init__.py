"""Runs, sweeps, figures and the command line that ties the toolkit together."""
