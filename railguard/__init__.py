"""The `railguard` command: the composition root, the one module that imports every package."""
