"""ndereg_ref.oracle.trace."""
