"""cifar-tui's training engine: config in, plain events out, controls at batch boundaries.

Nothing here imports textual; torch is imported only by the modules that train.
"""

__version__ = "0.1.0"
