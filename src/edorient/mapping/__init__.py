"""Orientation maps of 4D-STEM scans and folders of patterns (``edorient map``).

- :mod:`.scan`: reading a scan lazily (rosettasciio 4D-STEM files, .npy/.zarr, a folder or
  glob of pattern files) and its calibration;
- :mod:`.index`: one or two grains per pattern, decided by the fit;
- :mod:`.runner`: chunks on a Dask cluster, written atomically, resumable;
- :mod:`.outputs`: CSV, zarr, PNG maps, orix files, report;
- :mod:`.simulate`: a simulated polycrystal scan with ground truth.

See docs/mapping.md.
"""

from edorient.mapping.index import MapSettings, default_runs
from edorient.mapping.runner import ComputeSettings, MapRun, run_map
from edorient.mapping.scan import ScanSource, open_scan
from edorient.mapping.simulate import ScanSimConfig, simulate_scan, write_scan

__all__ = ["ComputeSettings", "MapRun", "MapSettings", "ScanSimConfig", "ScanSource", "default_runs", "open_scan",
           "run_map", "simulate_scan", "write_scan"]
