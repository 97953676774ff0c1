"""Statistics core for rating analysis: plain pandas/numpy/scipy, no Django imports."""
