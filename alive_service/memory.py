"""What the server and its workers really cost in memory, from /proc/PID/smaps_rollup.

RSS counts a shared page once in every process that maps it, so summing the RSS of a server
and workers that share their models (forked from the zygote, workers.py) overstates the
whole several times over. PSS divides each shared page between the processes that map it:
the PSS of a process tree adds up to what it really holds. Private (clean + dirty) is what a
process alone holds, and what killing it would give back.

    python -m alive_service.memory PID    # the tree under PID, one line per process
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

KB = 1024
MB = 1024 * 1024


@dataclass(frozen=True)
class Usage:
    """One process's memory in bytes."""

    pid: int
    name: str
    rss: int
    pss: int
    shared: int  # Shared_Clean + Shared_Dirty: pages another process maps too
    private: int  # Private_Clean + Private_Dirty

    def line(self) -> str:
        return (f"{self.pid:>8} {self.name:<14} RSS {self.rss / MB:7.1f}  PSS {self.pss / MB:7.1f}"
                f"  shared {self.shared / MB:7.1f}  private {self.private / MB:7.1f} MB")


def usage(pid: int) -> Usage | None:
    """``pid``'s memory, or None if it is gone (or not ours to read)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None
    fields: dict[str, int] = {}
    for line in text.splitlines()[1:]:  # the first line is the address range
        key, _, rest = line.partition(":")
        value = rest.split()
        if value and value[0].isdigit():
            fields[key] = int(value[0]) * KB
    return Usage(
        pid=pid, name=name, rss=fields.get("Rss", 0), pss=fields.get("Pss", 0),
        shared=fields.get("Shared_Clean", 0) + fields.get("Shared_Dirty", 0),
        private=fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0),
    )


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc/*/stat, which every kernel has)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The name (field 2) may hold spaces and parentheses: the ppid follows the last ")".
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def tree(pid: int) -> list[Usage]:
    """``pid`` and every process below it (the server, the zygote, its workers)."""
    out: list[Usage] = []
    pending = [pid]
    while pending:
        current = pending.pop(0)
        found = usage(current)
        if found is not None:
            out.append(found)
        pending.extend(children(current))
    return out


def totals(usages: list[Usage]) -> tuple[int, int]:
    """(sum of RSS, sum of PSS) in bytes: the second is what the tree really holds."""
    return sum(u.rss for u in usages), sum(u.pss for u in usages)


def report(pid: int, label: str = "") -> str:
    usages = tree(pid)
    rss, pss = totals(usages)
    head = f"[{label}] " if label else ""
    lines = [f"{head}{u.line()}" for u in usages]
    lines.append(f"{head}{'total':>8} {len(usages)} processes  RSS {rss / MB:7.1f}  "
                 f"PSS {pss / MB:7.1f} MB")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        sys.exit("usage: python -m alive_service.memory PID")
    print(report(int(sys.argv[1])))


if __name__ == "__main__":
    main()
