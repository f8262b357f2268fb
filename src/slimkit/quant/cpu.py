"""What the CPU's int8 instructions allow.

x86 CPUs without VNNI multiply uint8 × int8 with VPMADDUBSW, whose 16-bit intermediate sums can
saturate; quantizers then use 7-bit ranges (`reduce_range`). With VNNI (AVX512-VNNI or AVX-VNNI),
and on ARM, the full 8 bits are safe. torchao and ONNX Runtime both give this advice.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

_X86 = ("x86_64", "amd64", "i386", "i686", "x86")


def default_reduce_range(cpuinfo: str | os.PathLike = "/proc/cpuinfo") -> bool:
    """True on an x86 CPU without VNNI (or one that cannot be checked), else False."""
    if platform.machine().lower() not in _X86:
        return False
    try:
        flags = Path(cpuinfo).read_text()
    except OSError:
        return True  # cannot tell: 7-bit weights are the safe choice, at a small accuracy cost
    return re.search(r"\b(avx512_vnni|avx_vnni)\b", flags) is None
