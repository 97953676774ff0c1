"""Machine-learning core of the distillation pipeline: plain Python, no Django imports."""
