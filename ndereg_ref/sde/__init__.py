"""The SDE solver: Brownian path → SRI/SRA tableaus → one SDE step → the adaptive loop, run through the ODE
solver's attempt loop and PI controller (:mod:`ndereg_ref.ode.control`).  docs/design.md §7."""
