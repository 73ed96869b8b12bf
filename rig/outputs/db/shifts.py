"""Shifts: which shift of the line a run belongs to, from its start time.

A shift table is a list of (name, start "HH:MM") in the line's time zone; a shift lasts until
the next one starts (the last one until the first, across midnight). The default is three 8 h
shifts in UTC: early 06:00-14:00, late 14:00-22:00, night 22:00-06:00. A night shift belongs
to no calendar day here: the shift is a name, and statistics group by it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ...errors import ConfigError


@dataclass(frozen=True)
class ShiftTable:
    """The line's shifts: names and start times in one time zone."""

    starts: tuple[tuple[str, time], ...]
    zone: tzinfo = UTC

    def shift_of(self, started: str | None) -> str | None:
        """The shift a run that started at `started` (ISO 8601 with offset) belongs to; None when
        the record gives no readable start time."""
        if not started:
            return None
        try:
            when = datetime.fromisoformat(started)
        except ValueError:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)  # the rig writes UTC
        local = when.astimezone(self.zone).time()
        ordered = sorted(self.starts, key=lambda s: s[1])
        current = ordered[-1][0]  # before the first start of the day: the last shift goes on
        for name, start in ordered:
            if local >= start:
                current = name
        return current


DEFAULT_SHIFTS = ShiftTable((("early", time(6)), ("late", time(14)), ("night", time(22))), UTC)


def shift_table(data: object, where: str) -> ShiftTable:
    """A shift table from TOML data: `{timezone = "Europe/Berlin", shift = [{name, start}, ...]}`;
    every mistake a ConfigError naming `where`, the key and the value."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table with timezone and [[shifts.shift]]")
    zone_name = data.get("timezone", "UTC")
    try:
        zone: tzinfo = ZoneInfo(str(zone_name))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{where}.timezone = {zone_name!r}: expected an IANA zone") from None
    rows = data.get("shift")
    if not isinstance(rows, list) or not rows:
        raise ConfigError(f'{where}.shift: expected a list of {{name, start = "HH:MM"}}')
    starts = []
    for i, row in enumerate(rows):
        w = f"{where}.shift[{i}]"
        if not isinstance(row, dict) or not isinstance(row.get("name"), str) or not row["name"]:
            raise ConfigError(f"{w}: expected a name")
        try:
            start = time.fromisoformat(str(row.get("start")))
        except ValueError:
            raise ConfigError(f"{w}.start = {row.get('start')!r}: expected HH:MM") from None
        starts.append((row["name"], start))
    if len({s for _, s in starts}) != len(starts):
        raise ConfigError(f"{where}.shift: two shifts start at the same time")
    return ShiftTable(tuple(starts), zone)
