"""The parts of scripts/compare.py: plan (the grid of tokenizer configurations), runs (the `mvq` commands, their
skip/resume logic and adoption of finished models), report (results.json rows and results.md) and plots (Pillow)."""
