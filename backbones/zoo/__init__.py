"""The built-in architectures: one module per library, each constructor registered where it is defined.

Every module in this folder is imported by `backbones/__init__.py`, so a new architecture is one
file here (or one decorated function in an existing file) and nothing else.
"""
