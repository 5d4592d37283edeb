"""One row of the doctor's report, and the small probes several checks share.

Every check module returns :class:`Check` rows; ``ok`` is ``True``, ``"warn"`` or ``False``.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from typing import Any, Literal

Status = bool | Literal["warn"]
WARN: Literal["warn"] = "warn"


@dataclass(frozen=True)
class Check:
    """One row of the report: ``ok`` True (fine), ``"warn"`` (works, but fix this) or False (broken)."""

    name: str
    ok: Status
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail, "fix": self.fix}


def first_line(cmd: list[str], timeout: float) -> str:
    """First non-empty line of a tool's version output ("" when it prints nothing)."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL)
    for line in (proc.stdout + "\n" + proc.stderr).splitlines():
        if line.strip():
            return line.strip()
    return ""



def version_tuple(text: str) -> tuple[int, ...]:
    """The first three numbers of a version string, for comparing (``"deno 2.3.1"`` → ``(2, 3, 1)``)."""
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])
