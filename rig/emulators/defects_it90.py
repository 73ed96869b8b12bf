"""Seeded defects of the emulated IT-90: (name, requirements it breaks, description)."""

IT90_DEFECTS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    (
        "angle-gain-high",
        ("IT-PERF-01",),
        "positions 1.0 % beyond ANGLE_SET (setpoint scaling error: 90.9 deg at 90, 0 at 0; the "
        "PLC reading still agrees with the inclinometer)",
    ),
    (
        "rate-low-at-slow-speed",
        ("IT-PERF-02",),
        "with RATE below 2.0 deg/s the drive's top speed is 0.85 x RATE (3 and 6 deg/s are right)",
    ),
    (
        "overshoot",
        ("IT-PERF-03",),
        "each rotation to ANGLE_SET goes on 1.5 deg past it (0.2 s) and comes back (0.4 s), "
        "then holds",
    ),
    (
        "hold-drift",
        ("IT-PERF-04",),
        "while holding at ANGLE_SET under the motor the angle creeps head-down at 0.04 deg/s "
        "(up to 0.5 deg past the hold angle)",
    ),
    (
        "plc-angle-offset",
        ("IT-PERF-05",),
        "the ANGLE register reads 0.4 deg above the control channel (display only)",
    ),
    (
        "brake-slow",
        ("IT-SAF-01",),
        "the brake decelerates at 20 deg/s2 (e-stop and power loss)",
    ),
    (
        "brake-drift",
        ("IT-SAF-01", "IT-SAF-06"),
        "after an emergency brake or a power loss the brake slips: the angle creeps head-up "
        "toward 0 at 0.06 deg/s until the cause is gone (e-stop circuit closed, mains back, "
        "or RESET after an ESTOP command or monitor trip)",
    ),
    (
        "patient-return-fast",
        ("IT-SAF-02",),
        "the patient stop returns to 0 at 1.3 x RATE",
    ),
    (
        "patient-return-slow",
        (),
        "the patient stop returns to 0 at 0.7 x RATE: a deviation from plc-modbus.md that no "
        "requirement row judges (IT-SAF-02 sets no time for the return), so the unit must PASS; "
        "it takes 28.8 s from 60 deg at RATE 3 deg/s, beyond a fixed 25 s trace",
    ),
    (
        "no-limit-check",
        ("IT-SAF-03",),
        "ANGLE_SET is accepted above ANGLE_LIMIT and ANGLE_LIMIT below ANGLE_SET "
        "(each register's own range is still checked)",
    ),
    (
        "no-over-angle-monitor",
        ("IT-SAF-04",),
        "the over-angle monitor never trips",
    ),
    (
        "watchdog-slow",
        ("IT-SAF-05",),
        "the comm-loss watchdog fires at 2 x WATCHDOG_MS",
    ),
    (
        "power-restore-no-fault",
        ("IT-SAF-06",),
        "after a power restore the PLC comes up IDLE with FAULT 0 (START accepted at once)",
    ),
    (
        "restart-after-reset",
        ("IT-SAF-07",),
        "RESET from the ESTOP state returns to RUNNING and the table rotates to ANGLE_SET again",
    ),
    (
        "patient-interlock-bypass",
        ("IT-SAF-08",),
        "START is accepted while the patient stop switch is pressed, and the table runs",
    ),
)
