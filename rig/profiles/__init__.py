"""Model profiles as data: register map, rules, safe state and requirements, validated on load.

The model lives in `model`, reading files in `loading`, the checks in `validation` and the limit
expressions in `expr`; this package re-exports the public names.
"""

from __future__ import annotations

from .expr import Expr, ExprError, compile_expr
from .loading import PROFILE_FILE, PROFILES_DIR, REQUIREMENTS_FILE, available_profiles, load_profile
from .model import (
    MaxByRule,
    MeasurementSpec,
    MinSpanRule,
    ModelInfo,
    NotAboveRule,
    Profile,
    Register,
    Requirement,
    Rule,
    SafeLimit,
    SafeState,
)

__all__ = [
    "PROFILES_DIR",
    "PROFILE_FILE",
    "REQUIREMENTS_FILE",
    "Expr",
    "ExprError",
    "MaxByRule",
    "MeasurementSpec",
    "MinSpanRule",
    "ModelInfo",
    "NotAboveRule",
    "Profile",
    "Register",
    "Requirement",
    "Rule",
    "SafeLimit",
    "SafeState",
    "available_profiles",
    "compile_expr",
    "load_profile",
]
