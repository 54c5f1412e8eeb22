import subprocess
import sys

import pytest

from tests.pipeline.conftest import ROOT

# Page faults per round of what a minibatch read does (an 8 MB output block, two 4 MB blocks read into it,
# all freed), in a fresh process, before and after reuse_freed_memory(): out of the box glibc maps fresh
# pages and returns them every round, each of their 4,096 pages a fault.
FAULTS_PER_ROUND = """
import resource, sys
import numpy as np
sys.path.insert(0, {root!r})
from pipeline.allocator import reuse_freed_memory

def one_round():
    out = np.empty((512, 4096), np.float32)
    out[:256], out[256:] = np.ones((256, 4096), np.float32), np.ones((256, 4096), np.float32)

def faults_per_round():
    one_round()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        one_round()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 50

default = faults_per_round()
applied = reuse_freed_memory()
print(default, applied, faults_per_round())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_large_blocks_are_reused_instead_of_mapped_afresh():
    out = subprocess.run([sys.executable, "-c", FAULTS_PER_ROUND.format(root=str(ROOT))], capture_output=True, text=True, check=True).stdout
    default, applied, reused = out.split()
    if applied != "True":
        pytest.skip("not glibc's malloc")
    assert float(default) > 1000
    assert float(reused) < 100
