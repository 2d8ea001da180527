"""The ODE solver and its adjoints: tableaus → one RK step → step-size control → the adaptive solve →
discrete, tape and continuous adjoints.  Reading paths: docs/design.md §1.1."""
