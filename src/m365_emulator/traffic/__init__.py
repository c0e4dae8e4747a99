"""Mail traffic: live generator, 24 h back-fill and the daily volume model."""
