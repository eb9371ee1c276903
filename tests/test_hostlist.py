"""Slurm host list and per-node count expansion: pure tables."""

import shutil
import subprocess

import pytest

from dask_runners.hostlist import expand_hostlist, expand_tasks_per_node

from .launch import need

# (host list, expansion); the expansions agree with `scontrol show hostnames` (Slurm 22.05).
HOSTLISTS = [
    ("vm", ["vm"]),
    ("node01", ["node01"]),
    ("node[01-04,07],gpu-[1-2]", ["node01", "node02", "node03", "node04", "node07", "gpu-1", "gpu-2"]),
    ("n[008-011]", ["n008", "n009", "n010", "n011"]),
    ("n[8-11]", ["n8", "n9", "n10", "n11"]),
    ("n[08-11]", ["n08", "n09", "n10", "n11"]),
    ("n[1-010]", ["n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9", "n10"]),
    ("n[3]", ["n3"]),
    ("n[1,1]", ["n1", "n1"]),
    ("rack[1-2]-node[01-02]", ["rack1-node01", "rack1-node02", "rack2-node01", "rack2-node02"]),
    ("x[1-2][3-4]", ["x13", "x14", "x23", "x24"]),
    ("a[1,3-4]b[2]", ["a1b2", "a3b2", "a4b2"]),
    ("a,,b", ["a", "b"]),
    (" n1 , n2", ["n1", "n2"]),
    ("n[01-02] n3", ["n01", "n02", "n3"]),
    ("nid[00032-00035,00040]", ["nid00032", "nid00033", "nid00034", "nid00035", "nid00040"]),
    ("gpu-a100-[1-2],cpu-[099-101]", ["gpu-a100-1", "gpu-a100-2", "cpu-099", "cpu-100", "cpu-101"]),
    ("c[1-2]-[1-2],login", ["c1-1", "c1-2", "c2-1", "c2-2", "login"]),
    ("x1000c0s0b0n[0-1]", ["x1000c0s0b0n0", "x1000c0s0b0n1"]),
    ("node1.cluster.org,node2.cluster.org", ["node1.cluster.org", "node2.cluster.org"]),
]

# (host list, words the message must contain)
BAD_HOSTLISTS = [
    ("", ["empty"]),
    ("   ", ["empty"]),
    ("n[5-3]", ["'n[5-3]'", "position 2", "reversed range '5-3'"]),
    ("n[1-2", ["'n[1-2'", "position 1", "never closed"]),
    ("n1-2]", ["position 4", "without a matching '['"]),
    ("n[]", ["position 2", "got ''"]),
    ("n[1-2,]", ["position 6", "got ''"]),
    ("n[a-b]", ["got 'a-b'"]),
    ("n[[1]]", ["nested"]),
    ("a,n[1-2,9-8]", ["position 8", "'9-8'"]),
]


@pytest.mark.parametrize("text, expected", HOSTLISTS)
def test_expand_hostlist(text, expected):
    assert expand_hostlist(text) == expected


@pytest.mark.parametrize("text, words", BAD_HOSTLISTS)
def test_bad_hostlist_names_input_and_position(text, words):
    with pytest.raises(ValueError) as info:
        expand_hostlist(text)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("text, expected", [case for case in HOSTLISTS if "]" in case[0] and " " not in case[0]])
def test_table_agrees_with_scontrol(text, expected):
    need(shutil.which("scontrol") is not None, "Slurm's scontrol")  # a failure, not a skip, in CI
    result = subprocess.run(["scontrol", "show", "hostnames", text], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2", [2]),
        ("2(x3),1", [2, 2, 2, 1]),
        ("1(x4)", [1, 1, 1, 1]),
        ("72(x2),36", [72, 72, 36]),
        ("4,2(x2)", [4, 2, 2]),
    ],
)
def test_expand_tasks_per_node(text, expected):
    assert expand_tasks_per_node(text) == expected


@pytest.mark.parametrize("text", ["", "2(x)", "x3", "2(3)", "2,,1", "-1"])
def test_bad_tasks_per_node(text):
    with pytest.raises(ValueError, match="per-node count list"):
        expand_tasks_per_node(text)
