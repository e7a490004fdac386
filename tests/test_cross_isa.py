"""NEON kernels checked against the scalar reference on an x86 machine: cpp/tests/isa_check.cc is
cross-compiled for AArch64 with every kernel source and run under qemu-user. Needs Debian's
g++-aarch64-linux-gnu and qemu-user (.ci/run installs them); on an AArch64 machine the NEON
kernels are also tested through Python like every other ISA."""

import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CXX = shutil.which("aarch64-linux-gnu-g++")
QEMU = shutil.which("qemu-aarch64")
SYSROOT = pathlib.Path("/usr/aarch64-linux-gnu")


def kernel_sources():
    sources = sorted((ROOT / "cpp" / "src").rglob("*.cc"))
    return [s for s in sources if "_avx" not in s.name]


@pytest.mark.skipif(CXX is None or QEMU is None or not SYSROOT.is_dir(),
                    reason="needs g++-aarch64-linux-gnu and qemu-user (apt-get install g++-aarch64-linux-gnu qemu-user)")
def test_neon_kernels_match_scalar_under_qemu(tmp_path):
    exe = tmp_path / "isa_check"
    cmd = [CXX, "-std=c++17", "-O2", "-ffp-contract=off", f"-I{ROOT / 'cpp' / 'include'}",
           str(ROOT / "cpp" / "tests" / "isa_check.cc"), *map(str, kernel_sources()), "-lpthread", "-o", str(exe)]
    build = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-4000:]
    run = subprocess.run([QEMU, "-L", str(SYSROOT), str(exe), "neon"], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "all kernels match scalar" in run.stdout
