"""The trace-driven lost-sales simulator (DESIGN.md section 4) and classic policies."""
