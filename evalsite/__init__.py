"""evalsite: distil LLMs into small students and evaluate their explanations with people."""
