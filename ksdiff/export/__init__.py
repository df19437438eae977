"""Exporters: motion into the formats animators use (Live Link Face CSV, ...)."""
