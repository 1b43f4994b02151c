"""Stages of a run, each in its own module, between the suite runner and the components it calls."""
