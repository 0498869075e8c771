"""`keep_freed_memory`: a freed large tensor's pages are reused, not faulted in again."""

import os
import subprocess
import sys

SCRIPT = """
import resource, sys, torch
from simpo.ops.allocator import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False

def faults_of_one_tensor(megabytes):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(megabytes * 2**18)  # written once, then freed
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

faults_of_one_tensor(256)
print(kept, faults_of_one_tensor(192))  # fits where the first one was
"""


def run(mode: str, **env) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, **env}).stdout.split()
    return out[0], int(out[1])


def test_the_second_large_tensor_reuses_the_first_ones_pages():
    pages = 192 * 2**20 // os.sysconf("SC_PAGE_SIZE")
    kept, faults = run("default")
    assert kept == "False" and faults > 0.9 * pages  # glibc mmaps it and gives it back on free
    kept, faults = run("keep")
    assert kept == "True" and faults < 0.01 * pages


def test_the_users_own_glibc_settings_are_left_alone():
    kept, faults = run("keep", GLIBC_TUNABLES="glibc.malloc.check=0")
    assert kept == "False"
    kept, _ = run("keep", MALLOC_ARENA_MAX_="2")
    assert kept == "False"
