"""Recipes: each seed method's training objective over the one generic loop.

``config.recipe.name`` picks a recipe: a name of :data:`REGISTRY`, or ``"module:attr"``
naming a :class:`~jpose.recipes.base.Recipe` anywhere importable (a user's own, or a test's).
See :mod:`jpose.recipes.base` for what a recipe is and README "Adding a recipe".
"""

from __future__ import annotations

import importlib

from jpose.recipes import li_boosting, multiview_lifting, supervised, videopose_semi
from jpose.recipes import mcss
from jpose.recipes import factorization  # CFN (thesis ch. 4)
from jpose.recipes.base import (Predictor, Recipe, Step, init_networks, network_variables,
                                phase_boundaries, phase_of)

__all__ = ["REGISTRY", "get", "Predictor", "Recipe", "Step", "init_networks",
           "network_variables", "phase_boundaries", "phase_of"]

#: The recipes shipped with jpose, by name.
REGISTRY: dict[str, Recipe] = {
    "supervised": supervised.RECIPE,
    "videopose_semi": videopose_semi.RECIPE,
    "li_boosting": li_boosting.RECIPE,
    "multiview_lifting": multiview_lifting.RECIPE,
    "mcss": mcss.RECIPE,
    "relative_depth": importlib.import_module("jpose.recipes.relative_depth").RECIPE,
    "factorization": factorization.RECIPE,
}


def get(name: str) -> Recipe:
    """The recipe called ``name`` (registry name or ``"package.module:ATTR"``)."""
    if name in REGISTRY:
        return REGISTRY[name]
    if ":" in name:
        module_name, attr = name.split(":", 1)
        try:
            recipe = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"recipe.name: cannot import {name!r} ({e})") from None
        if not isinstance(recipe, Recipe):
            raise ValueError(f"recipe.name: {name!r} is a {type(recipe).__name__}, not a "
                             "jpose.recipes.Recipe")
        return recipe
    raise ValueError(f"recipe.name: unknown recipe {name!r}; known: {sorted(REGISTRY)} "
                     "(or 'module:ATTR')")
