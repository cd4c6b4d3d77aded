"""The kernel table per CPU (dispatch.cpp): which instruction set a CPU gets when nothing forces one."""
import os
import subprocess
import sys

import pytest

import rnnfast
from rnnfast import _core

X86 = "avx2" in _core.isa_order("GenuineIntel", 6)  # an x86-64 build has every x86 path


def test_an_order_names_every_set_of_the_build_once():
    for vendor, family in [("GenuineIntel", 6), ("AuthenticAMD", 0x19), ("AuthenticAMD", 0x1A), ("", 0)]:
        order = _core.isa_order(vendor, family)
        assert len(order) == len(set(order)) and order[-1] == "scalar"
        assert set(order) == set(_core.isa_order("GenuineIntel", 6))
        assert set(rnnfast.available_isas()) <= set(order)


@pytest.mark.skipif(not X86, reason="the rules name x86 paths")
def test_zen4_and_zen5_alone_put_vdpbf16ps_ahead_of_widened_bfloat16():
    plain = _core.isa_order("GenuineIntel", 6)
    assert plain[:2] == ["avx512_amx", "avx512_vnni"] and plain.index("avx512_bf16") > plain.index("avx512")
    for vendor, family in [("AuthenticAMD", 0x17), ("AuthenticAMD", 0x18), ("AuthenticAMD", 0x1B),
                           ("HygonGenuine", 0x19), ("HygonGenuine", 0x1A), ("GenuineIntel", 0x1A), ("", 0)]:
        assert _core.isa_order(vendor, family) == plain, (vendor, family)
    for family in (0x19, 0x1A):
        zen = _core.isa_order("AuthenticAMD", family)
        assert zen[:3] == ["avx512_amx", "avx512_bf16", "avx512_vnni"], family
        assert [n for n in zen if n != "avx512_bf16"] == [n for n in plain if n != "avx512_bf16"], family


@pytest.mark.parametrize("eax, family, model", [
    (0x00B00F21, 0x1A, 0x02),  # base family 0xF: the extended family added, the extended model too
    (0x00A10F11, 0x19, 0x11),
    (0x00000F29, 0x0F, 0x02),
    (0x000806F8, 0x06, 0x8F),  # base family 6: the extended model only
    (0x000C06F1, 0x06, 0xCF),
    (0x0FF10543, 0x05, 0x04),  # any other: neither
])
def test_cpuid_signature_decodes_as_the_vendors_number_it(eax, family, model):
    assert _core.cpuid_family_model(eax) == (family, model)


def _first_processor():
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor's block
                key, _, value = line.partition(":")
                info[key.strip()] = value.strip()
    except OSError:
        pass
    return info


@pytest.mark.skipif(not X86 or not {"vendor_id", "cpu family", "model"} <= _first_processor().keys(),
                    reason="needs x86 and /proc/cpuinfo's vendor, family and model")
def test_cpu_id_is_what_the_kernel_reports():
    info = _first_processor()
    assert _core.cpu_id() == (info["vendor_id"], int(info["cpu family"]), int(info["model"]))


def test_this_cpu_gets_the_first_set_of_its_order_that_it_runs():
    vendor, family, _ = _core.cpu_id()
    available = rnnfast.available_isas()
    expected = [n for n in _core.isa_order(vendor, family) if n in available]
    assert available == expected  # best first, in this CPU's order
    env = {k: v for k, v in os.environ.items() if k != "RNNFAST_ISA"}
    run = subprocess.run([sys.executable, "-c", "import rnnfast; print(rnnfast.isa())"], env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip() == expected[0], run.stderr
