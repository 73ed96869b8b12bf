"""Driver for the ACT-3 actuator box: e-stop, patient-stop and mains relays on the trigger bus."""

from __future__ import annotations

from typing import ClassVar

from .scpi import ScpiInstrument, bool_reply, control, int_reply, measurement, strict_bool

_ON_OFF = {True: "ON", False: "OFF"}


class ACT3(ScpiInstrument):
    """ACT-3. Every relay change is one trigger-bus edge at the instant the contact changes;
    setting a relay to the state it already has issues none.
    """

    MODEL: ClassVar[str] = "ACT-3"

    estop = control(
        "OUTP:EST?",
        "OUTP:EST {}",
        "True opens the table's hardwired e-stop circuit (the button pressed). Default False.",
        validator=strict_bool,
        values=_ON_OFF,
        map_values=True,
        get_process=bool_reply,
    )
    patient = control(
        "OUTP:PAT?",
        "OUTP:PAT {}",
        "True presses the patient stop switch. Default False.",
        validator=strict_bool,
        values=_ON_OFF,
        map_values=True,
        get_process=bool_reply,
    )
    power = control(
        "OUTP:POW?",
        "OUTP:POW {}",
        "The table's mains. Default True.",
        validator=strict_bool,
        values=_ON_OFF,
        map_values=True,
        get_process=bool_reply,
    )
    trigger_count = measurement(
        "TRIG:COUN?", "Trigger-bus edges issued since power-up.", get_process=int_reply
    )
