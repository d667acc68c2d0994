"""Experiment configs: ``default.py`` holds every key (the schema); one file per dataset overrides values.

Each file's ``get_config(method)`` takes the method named after ``:`` on the command line
(``--config=configs/svhn.py:lebm``).
"""
