"""An example balgrad plug-in. Each module registers one thing when balgrad first looks
its name up (the entry points in pyproject.toml name them)."""
