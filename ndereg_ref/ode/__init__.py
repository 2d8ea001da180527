"""ndereg_ref.ode."""
