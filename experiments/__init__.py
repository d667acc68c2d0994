"""Command-line runner: ``python -m experiments.main --config=configs/<dataset>.py[:method]``."""
