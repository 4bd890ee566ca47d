"""Strict test environment (STYLE habit 13).

Rank promotion raises and dtype promotion is strict for the whole suite, so that
implicit broadcasting or silent float64 -> float32 mixing is caught here and not in a
user's model. x64 stays off by default; tests that need float64 enable it locally with
``jax.enable_x64(True)`` (restored afterwards) and keep a float32 counterpart.
"""

import os

# Must happen before jax initialises its backends: some tests use 4 fake CPU devices.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")
