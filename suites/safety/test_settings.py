"""Setting limits: every setting just outside its range (and every dependent limit) is refused."""

import pytest

from rig.errors import ModbusExceptionError
from rig.procedures import arm, procedure_for
from rig.procedures.events import require_complete

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


# Requests per probe: the write, the read before and after it, and a restore when taken.
REQUESTS_PER_PROBE = 4


def _device_s_per_request(table, n=4):
    """Device seconds one Modbus request takes on this bench now (UPTIME_MS around n reads)."""
    u0 = table.uptime_ms()
    for _ in range(n):
        table.uptime_ms()
    return max(table.uptime_ms() - u0, 0) / 1000.0 / (n + 1)


@pytest.mark.verifies("setting_limits")
def test_setting_limits(requirement, check, profile, table, reference_meter):
    """Write each probe while the reference records; expect exception 03, the old value kept,
    and nothing moving while the writes are made and still_s after them."""
    kind = procedure_for(profile)
    p = requirement.params
    table.configure(dict(requirement.settings))
    todo = probes(profile)
    still = float(p["still_s"])
    # long enough for the writes at the bench's present round trip (three times over), and
    # never shorter than writes_s; that it was long enough is checked below, by the PLC clock
    writes_s = max(
        float(p["writes_s"]), 3.0 * REQUESTS_PER_PROBE * len(todo) * _device_s_per_request(table)
    )
    acq = arm(reference_meter, duration_s=writes_s + still, rate_hz=100.0, pretrigger_s=0.0)
    # the trigger comes after this reading: the writes end no later than (u_end - u_before)
    u_before = table.uptime_ms()
    reference_meter.trigger()
    results = []
    for name, raw, precondition, why in todo:
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
        results.append((code, int(after == before), f"{name} raw {raw} ({why})"))
    writes_end = (table.uptime_ms() - u_before) / 1000.0
    trace = acq.fetch(table)
    # the window judged runs from the trigger (before the first write) to still_s after the
    # last; an acquisition that ended before that missed part of it: the rig's ERROR
    require_complete(check, trace, kind.channel, until=writes_end + still)
    check.trace(
        "during-writes",
        trace,
        channel=kind.channel,
        marks={"writes end": writes_end, "still until": writes_end + still},
    )
    for code, unchanged, note in results:
        check.measure("exception_code", code, note=note)
        check.measure("register_unchanged", unchanged, note=note)
    if check.has("motion"):
        check.measure(
            "motion",
            kind.motion(trace, start=0.0, end=writes_end + still),
            note=f"{len(results)} refused writes in the first {writes_end:.2f} s; "
            f"state {table.state()}",
        )
