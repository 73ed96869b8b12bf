"""Setting limits: every setting just outside its range (and every dependent limit) is refused."""

import pytest

from rig.errors import ModbusExceptionError
from rig.procedures import arm, procedure_for

pytestmark = pytest.mark.safety


def probes(profile):
    """(register, raw value, why) just outside every setting's range and every rule's limit."""
    out = []
    # a register whose maximum depends on another is probed against each of its maxima below
    capped = {r.register for r in profile.rules if r.kind == "max_by"}
    for reg in profile.settings().values():
        lo, hi = reg.raw_int(reg.min), reg.raw_int(reg.max)
        for raw, why in ((lo - 1, "below min"), (hi + 1, "above max")):
            if why == "above max" and reg.name in capped:
                continue
            if _representable(reg, raw):
                out.append((reg.name, raw, None, why))
    for rule in profile.rules:
        if rule.kind == "max_by":
            reg = profile.register(rule.register)
            for by_value, cap in rule.max.items():
                raw = reg.raw_int(cap) + 1
                out.append(
                    (
                        reg.name,
                        raw,
                        (rule.by, int(by_value)),
                        f"above max with {rule.by} {by_value}",
                    )
                )
        elif rule.kind == "min_span":
            first, second = (profile.register(n) for n in rule.registers)
            out.append(
                (
                    second.name,
                    ("span", first.name, rule.min),
                    None,
                    f"{second.name} - {first.name} one step below {rule.min:g}",
                )
            )
        elif rule.kind == "not_above":
            reg, lim = profile.register(rule.register), profile.register(rule.limit)
            out.append((reg.name, ("above", lim.name), None, f"above {lim.name}"))
            out.append((lim.name, ("below", reg.name), None, f"below {reg.name}"))
    seen, unique = set(), []
    for p in out:
        if (p[0], str(p[1]), p[2]) not in seen:
            seen.add((p[0], str(p[1]), p[2]))
            unique.append(p)
    return unique


def relative_probe(profile, table, name, spec):
    """Raw value one step past a rule that depends on another register's present value."""
    what, other = spec[0], spec[1]
    other_raw = table.read_raw(other)
    reg, oreg = profile.register(name), profile.register(other)
    if what == "span":  # e.g. TRAVEL_END = TRAVEL_START + 99 mm
        return oreg.raw_int(oreg.value_of(other_raw) + spec[2]) - 1
    if what == "above":  # e.g. ANGLE_SET one step above ANGLE_LIMIT
        return reg.raw_int(oreg.value_of(other_raw)) + 1
    return reg.raw_int(oreg.value_of(other_raw)) - 1  # e.g. ANGLE_LIMIT below ANGLE_SET


def _representable(reg, raw):
    try:
        reg.words(raw)
    except ValueError:
        return False
    return True


@pytest.mark.verifies("setting_limits")
def test_setting_limits(requirement, check, profile, table, reference_meter):
    """Write each probe; expect exception 03, the old value kept, and nothing moving."""
    kind = procedure_for(profile)
    table.configure(dict(requirement.settings))
    for name, raw, precondition, why in probes(profile):
        if precondition is not None:
            table.configure({precondition[0]: precondition[1]})
        if isinstance(raw, tuple):  # a dependent limit: relative to the other register now
            raw = relative_probe(profile, table, name, raw)
        before = table.read_raw(name)
        code = 0
        try:
            with table.unguarded(f"{requirement.id} out-of-range probe ({why})"):
                table.write_raw(name, raw)
        except ModbusExceptionError as e:
            code = e.code
        after = table.read_raw(name)
        if after != before:  # a defective table took it: put the old value back
            with table.unguarded(f"{requirement.id} restore after a taken probe"):
                table.write_raw(name, before)
        note = f"{name} raw {raw} ({why})"
        check.measure("exception_code", code, note=note)
        check.measure("register_unchanged", int(after == before), note=note)
    acq = arm(
        reference_meter,
        duration_s=float(requirement.params["still_s"]),
        rate_hz=100.0,
        pretrigger_s=0.0,
    )
    reference_meter.trigger()
    trace = acq.fetch(table)
    check.trace("after-writes", trace, channel=kind.channel)
    if check.has("motion"):
        check.measure("motion", kind.motion(trace), note=f"state {table.state()}")
