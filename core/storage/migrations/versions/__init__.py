"""Burrow's Alembic revisions, one file per schema version (`NNNN_slug.py`, revision id "NNNN").

A package only so that `pip install` ships these files; Alembic loads them by path and never
imports this module (it skips `__init__.py`).
"""
