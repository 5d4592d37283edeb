"""Tubemill's engine, recipes and command line.

Importing the package turns off ONNX Runtime's telemetry (faster-whisper's VAD runs on it):
unless told otherwise it writes a device id and an event queue with file paths under
``~/.cache/Microsoft/DeveloperTools/`` and uploads them. The variables must be set before
onnxruntime initialises, so here, before any stage imports it — in the app, the CLI and
Dask workers alike (they import this package to run a stage).
"""

import os as _os

for _var in ("ORT_DISABLE_TELEMETRY", "ORT_TELEMETRY_DISABLED"):  # the first is the full opt-out (no files)
    _os.environ.setdefault(_var, "1")
