"""Test-wide settings: no network but 127.0.0.1, and an empty data cache.

Set at import time, before any test module runs, so that subprocesses started by the tests (the study
command, the trainer CLI) inherit the same environment.
"""

import os
import tempfile

# The full QuickDraw files come from Google's bucket; tests never reach it. Downloader tests pass their
# own base URL on 127.0.0.1 together with offline=False.
os.environ["SMOE_OFFLINE"] = "1"

# An empty cache, so a researcher's downloaded data cannot change what "auto" resolves to in a test.
os.environ["SMOE_DATA"] = tempfile.mkdtemp(prefix="smoe-test-cache-")

# With this set, every Ray node started by a test advertises 127.0.0.1 (measured with Ray 2.60; without
# it a multi-node ray.cluster_utils.Cluster advertises the machine's own address and hangs).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

# Ray's usage-stats reporter would otherwise try to reach the internet.
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
