"""Everything a run is: its config and presets, prepare (every check before anything is
written), the orchestrator (``execute``), the run directory and its files, saved results and
predictions, the report of one run, trackers, and a finished run read back (``Run``).

``api`` and ``cli`` are thin layers over this package; ``study`` runs ordinary runs through it.
"""
