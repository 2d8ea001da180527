"""Learning on top of the solvers: vector fields (MLPs, neural SDEs), data, tasks and the training loop."""
