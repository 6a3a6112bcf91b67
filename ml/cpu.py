"""The CPU's instruction-set flags that decide which engine and precision pay off (read, never assumed).

Torch-free, so that :mod:`ml.lite` (a worker serving without PyTorch) decides as :mod:`ml.serving` does.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass


@dataclass(frozen=True)
class CPUFeatures:
    """The instruction-set flags that decide which engine and precision pay off on this CPU."""

    flags: frozenset[str]

    @property
    def avx512(self) -> bool:
        return "avx512f" in self.flags

    @property
    def avx512_bf16(self) -> bool:
        return "avx512_bf16" in self.flags

    @property
    def amx_bf16(self) -> bool:
        return "amx_bf16" in self.flags and "amx_tile" in self.flags

    @property
    def amx_int8(self) -> bool:
        return "amx_int8" in self.flags and "amx_tile" in self.flags

    @property
    def vnni(self) -> bool:
        return "avx512_vnni" in self.flags or "avx_vnni" in self.flags

    @property
    def bf16(self) -> bool:
        """Native bfloat16 arithmetic (AVX512-BF16 dot products or AMX tiles)."""
        return self.avx512_bf16 or self.amx_bf16

    def summary(self) -> str:
        names = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
        present = [n for n in names if n in self.flags]
        return " ".join(present) if present else "none of avx2/avx512/amx"


def _read_cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@functools.cache
def cpu_features() -> CPUFeatures:
    """This CPU's flags (Linux ``/proc/cpuinfo``; elsewhere none are assumed, so no bf16 default)."""
    return CPUFeatures(_read_cpu_flags())
