"""The bench layer: the Table role and provisioning a station."""
