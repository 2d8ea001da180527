"""ndereg_ref.sde.solve."""
