"""Inter-process output of `serve`: the shared-memory video/audio rings and the control/status channel."""
