"""Pure PyTorch / transformers code. Never imports Django (DESIGN.md, rule 3)."""
