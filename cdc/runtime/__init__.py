"""Runtime: runs sources and sinks, in order, with checkpoints and shutdown."""
