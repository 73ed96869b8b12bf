"""Procedures: how a table kind is brought to a condition and what its traces mean, with every
number from the profile (one module per kind), and the judge that records measurements."""

from __future__ import annotations

from ..errors import ConfigError
from ..profiles import Profile
from .common import Acquisition, Procedure, arm
from .inversion import InversionProcedure
from .roller import RollerProcedure, nominal_period
from .traction import TractionProcedure

__all__ = [
    "PROCEDURES",
    "Acquisition",
    "InversionProcedure",
    "Procedure",
    "RollerProcedure",
    "TractionProcedure",
    "arm",
    "nominal_period",
    "procedure_for",
]

PROCEDURES: dict[str, type[Procedure]] = {
    p.kind: p for p in (TractionProcedure, RollerProcedure, InversionProcedure)
}


def procedure_for(profile: Profile) -> Procedure:
    """The procedure object of a profile's table kind, reading its numbers from `profile`."""
    try:
        return PROCEDURES[profile.model.kind_name](profile)
    except KeyError:
        raise ConfigError(
            f"{profile.model.name}: no procedure for table kind {profile.model.kind_name!r}; "
            f"known: {sorted(PROCEDURES)}"
        ) from None
