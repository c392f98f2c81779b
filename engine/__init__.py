"""Gatys-style neural style transfer over VGG19.

Importing the package is cheap (no torch): the UI reads params from here. The compute lives in
`engine.transfer`, imported on demand.
"""
from engine.params import PRESETS, Params, ParamsError, preset, validate, validation_errors

__all__ = ["PRESETS", "Params", "ParamsError", "preset", "validate", "validation_errors"]
