"""The emulated bench: a simulated world in device time behind real Modbus TCP and SCPI servers."""
