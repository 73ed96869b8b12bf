"""Reading a profile directory: profile.toml and requirements.toml, validated, hashed."""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path
from types import MappingProxyType
from typing import Any

from rig.errors import ConfigError, ProfileError
from rig.evidence.format import canonical_value

from .model import Profile
from .validation import _ProfileLoader, _RequirementLoader

PROFILES_DIR = Path(__file__).resolve().parent
PROFILE_FILE = "profile.toml"
REQUIREMENTS_FILE = "requirements.toml"
_TOML_POSITION = re.compile(r"at line (\d+), column (\d+)")


def available_profiles() -> list[str]:
    """The model names packaged with the rig."""
    return sorted(
        p.name for p in PROFILES_DIR.iterdir() if p.is_dir() and (p / PROFILE_FILE).is_file()
    )


def load_profile(name_or_path: str | Path) -> Profile:
    """Load and validate a packaged model (`"TT-890"`, any case) or a profile directory."""
    directory = _resolve(name_or_path)
    profile_file = directory / PROFILE_FILE
    req_file = directory / REQUIREMENTS_FILE
    for file in (profile_file, req_file):
        if not file.is_file():
            raise ProfileError(str(file), "(file)", "missing", f"a {file.name} in {directory}")
    raw_profile = _read_toml(profile_file)
    raw_reqs = _read_toml(req_file)
    loader = _ProfileLoader(str(profile_file))
    model, registers, rules, safe_state = loader.load(raw_profile)
    home = loader.home(raw_profile.get("home"), model.kind_name)
    operator_steps = loader.operator_steps(raw_profile)
    requirements = _RequirementLoader(
        str(req_file), model.name, registers, rules, model.kind_name
    ).load(raw_reqs)
    req_hash = hashlib.sha256(_canonical(raw_reqs)).hexdigest()
    whole = hashlib.sha256(
        _canonical({"profile": raw_profile, "requirements": raw_reqs})
    ).hexdigest()
    return Profile(
        path=directory,
        model=model,
        registers=MappingProxyType(registers),
        rules=rules,
        safe_state=safe_state,
        requirements=requirements,
        sha256=whole,
        requirements_sha256=req_hash,
        home=MappingProxyType(home),
        operator_steps=operator_steps,
    )


def _resolve(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    looks_like_path = isinstance(name_or_path, Path) or "/" in text or "\\" in text
    if not looks_like_path:
        for name in available_profiles():
            if name.lower() == text.lower():
                return PROFILES_DIR / name
        candidate = Path(text)
        if not (candidate.is_dir() and (candidate / PROFILE_FILE).is_file()):
            raise ConfigError(
                f"unknown table model {text!r}; available: {', '.join(available_profiles())}"
            )
        return candidate
    path = Path(name_or_path)
    if path.is_file() and path.name == PROFILE_FILE:
        path = path.parent
    if not path.is_dir():
        raise ConfigError(
            f"no profile directory at {path}; packaged models: {', '.join(available_profiles())}"
        )
    return path


def _read_toml(file: Path) -> dict[str, Any]:
    text = file.read_bytes()
    try:
        return tomllib.loads(text.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ProfileError(str(file), "(file)", f"byte {exc.start}", "UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        where = _TOML_POSITION.search(message)
        if where is None:
            raise ProfileError(str(file), "(toml)", "", f"valid TOML: {message}") from None
        line = int(where.group(1))
        lines = text.decode("utf-8").splitlines()
        source = lines[line - 1].strip() if 0 < line <= len(lines) else ""
        raise ProfileError(str(file), f"line {line}", source, f"valid TOML: {message}") from None


def _canonical(data: object) -> bytes:
    return canonical_value(data, ascii_only=False, allow_nan=False)
