"""Generators: the plugins that draw the mouth (base.py: the contract; registry.py: the one list of them).

Kept empty of imports so `backend.generators.registry` stays importable without numpy (the OBS panel lists
the engines from it).
"""
