"""Reconstruction: captions -> layouts -> redraws -> fidelity scores and galleries."""
