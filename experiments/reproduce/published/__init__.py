"""The four papers' tables and figures, transcribed (see ``experiments/reproduce/paper_tables.py``)."""
