"""Seeded defects of the emulated RT-600: (name, requirements it breaks, description).

Each number is chosen so that the defect breaks its own requirement and passes every other one
under the conditions of requirements.md (50-550 mm at 60 mm/s: T = 18.267 s; 200-400 mm at
20 mm/s: T = 21.2 s; e-stop at 60 mm/s, monitor, watchdog and power tests at 40 mm/s); the
arithmetic is in tests/test_roller_emulator.py and in the RT-600 emulator's report.
"""

RT600_DEFECTS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    (
        "period-long",
        ("RT-PERF-01",),
        "each dwell lasts 0.5 s + 1.5 % of the nominal T (computed from the present travel and "
        "SPEED), so the cycle period is 3 % above T; speeds, reversals and CYCLES are normal",
    ),
    (
        "cycle-jitter",
        ("RT-PERF-01",),
        "both dwells of a cycle last 0.7 s and 0.3 s in alternate cycles (first cycle 0.7 s): "
        "periods T + 0.4 s / T - 0.4 s, a mean of 3 within 0.8 % of T, jitter 0.46 s",
    ),
    (
        "speed-high",
        ("RT-PERF-02",),
        "every carriage move tops out at 1.06 x SPEED (below the 1.2 x overspeed limit); the "
        "dwells are lengthened by the time saved, so the cycle period stays exactly nominal",
    ),
    (
        "reversal-overshoot",
        ("RT-PERF-03",),
        "the far reversal is 2.5 mm beyond TRAVEL_END (true and control channel alike, so the "
        "PLC reading agrees with the encoder)",
    ),
    (
        "far-reversal-clipped",
        ("RT-PERF-03", "RT-PERF-05"),
        "the far reversal is 3.5 mm beyond TRAVEL_END (true and control channel alike), and the "
        "POSITION register never reads more than TRAVEL_END (a display clipped at the travel "
        "limit): the far dwells' PLC readings are 3.5 mm short",
    ),
    (
        "lift-low",
        ("RT-PERF-04",),
        "the lift settles 1.5 mm below 3.0 mm x INTENSITY (INTENSITY 0 stays at 0 mm)",
    ),
    (
        "plc-position-offset",
        ("RT-PERF-05",),
        "the POSITION register reads 1.5 mm above the control channel (display only)",
    ),
    (
        "cycles-off-by-one",
        ("RT-PERF-06",),
        "the CYCLES register reads one more than the round trips completed, once there is one",
    ),
    (
        "brake-slow",
        ("RT-SAF-01",),
        "the carriage brake decelerates at 350 mm/s2 (e-stop, monitor trips, power loss): "
        "5.1 mm from 60 mm/s; from 40 mm/s 2.3 mm in 114 ms, which RT-SAF-04 and -06 still pass",
    ),
    (
        "brake-creep",
        ("RT-SAF-01",),
        "after a hardwired e-stop the brake holds the carriage for 1 s, then slips: it creeps on "
        "at 4 mm/s in its direction of travel (at most 50 mm) until the e-stop circuit closes "
        "(the stop time and the 0-1 s window are normal; ESTOP commands, monitor trips and power "
        "loss are not affected)",
    ),
    (
        "patient-no-park",
        ("RT-SAF-02",),
        "a patient stop lowers the lift but brakes the carriage where it is instead of "
        "returning it to TRAVEL_START",
    ),
    (
        "no-span-check",
        ("RT-SAF-03",),
        "the TRAVEL_END - TRAVEL_START >= 100 mm rule is not enforced (ranges still are)",
    ),
    (
        "no-overtravel-monitor",
        ("RT-SAF-04",),
        "the overtravel monitor never trips (the overspeed monitor still does)",
    ),
    (
        "watchdog-slow",
        ("RT-SAF-05",),
        "the comm-loss watchdog fires at 2 x WATCHDOG_MS",
    ),
    (
        "power-restore-no-fault",
        ("RT-SAF-06",),
        "after a power restore the PLC comes up IDLE with FAULT 0 (START accepted at once)",
    ),
    (
        "restart-after-reset",
        ("RT-SAF-07",),
        "RESET from the ESTOP state returns to RUNNING: the carriage parks and cycles again",
    ),
    (
        "patient-interlock-bypass",
        ("RT-SAF-08",),
        "START is accepted while the patient stop switch is pressed, and the table runs",
    ),
)
