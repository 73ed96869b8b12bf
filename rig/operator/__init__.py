"""The operator station in the browser (`rig station serve`): benches side by side, live runs."""
