"""Writes of the annotations app: studies and explanations (studies.py), annotator sessions (sessions.py)."""
