"""Probing a device for its profile (issue 15): the calibration models and their timing.

Building the calibration models needs torch and the exporter, so this package sits above
``export``; the profile it writes and the predictor that reads it (:mod:`edgevit.predict`)
need neither.

* :mod:`edgevit.probe.modules`: one torch module per calibration kernel;
* :mod:`edgevit.probe.timers`: where they are timed: here with ``edgevit.runtime``, or on a device agent;
* :mod:`edgevit.probe.calibrate`: :func:`probe_local` and :func:`probe_remote`, which write the profile.

Example:
    >>> from edgevit.probe import probe_local
    >>> from edgevit.predict import save_profile
    >>> result = probe_local("onnxruntime", preset="quick", rounds=5)  # doctest: +SKIP
    >>> save_profile(result.profile, "here-onnxruntime.json")  # doctest: +SKIP
"""

from __future__ import annotations

from edgevit.probe.calibrate import ProbeResult, probe, probe_local, probe_remote

__all__ = ["ProbeResult", "probe", "probe_local", "probe_remote"]
