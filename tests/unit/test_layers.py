"""The pure modules import none of trio, boto3 or pyfuse3; boto3 lives only in store/s3.py."""

import pathlib
import subprocess
import sys

import pytest

PURE = ["ssecfs.errors", "ssecfs.keys", "ssecfs.config", "ssecfs.paths", "ssecfs.ranges",
        "ssecfs.parts", "ssecfs.cache", "ssecfs.inodes", "ssecfs.attrs", "ssecfs.buffer",
        "ssecfs.shard", "ssecfs.progress", "ssecfs.report", "ssecfs.xattrs", "ssecfs.content",
        "ssecfs.versions"]


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_io_library(module):
    code = (f"import sys, {module}; bad = [m for m in ('trio', 'boto3', 'botocore', 'pyfuse3') "
            f"if m in sys.modules]; print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_boto3_and_pyfuse3_stay_in_their_modules():
    root = pathlib.Path(__file__).resolve().parents[2] / "ssecfs"
    for path in root.rglob("*.py"):
        text = path.read_text()
        rel = path.relative_to(root).as_posix()
        if "import boto3" in text or "import botocore" in text:
            assert rel == "store/s3.py", rel
        if "import pyfuse3" in text:
            assert rel in ("fuse_ops.py", "mount.py"), rel
        if "FUSEError(" in text:
            assert rel == "fuse_ops.py", rel
