"""ndereg_ref.learn."""
