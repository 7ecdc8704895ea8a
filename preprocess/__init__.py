"""Video -> avatar package (docs/architecture.md, "The avatar package") and LRS2-style training set.

Heavy imports live in submodules.
"""
