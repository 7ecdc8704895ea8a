"""Video -> avatar package (DESIGN §2) and LRS2-style training set. Heavy imports live in submodules."""
