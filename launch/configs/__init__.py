"""Experiment configs (ml_collections). Each file's ``get_config(arg)`` takes ``"tiny"``
to shrink data, model and steps to a CI-sized end-to-end run."""
