"""Writes of the distillation app: imports (imports.py), teacher generation (teacher.py), students (students.py)."""
