"""``cifar-tui sweep``: many runs on Optuna (its samplers, pruners and storage); every trial an
ordinary run."""
