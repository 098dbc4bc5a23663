"""What the benchmark report scripts share: machine facts and BENCHMARKS.md sections.

Standard library only. Each report replaces its own "## ..." section of BENCHMARKS.md whole,
so every figure in a section comes from one run.
"""

import os
import re
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPORT = os.path.join(ROOT, "BENCHMARKS.md")
FILE_HEADER = """# Meridian benchmarks

Speed measurements of Meridian, one section per benchmark, each with the command that
reproduces it. Every number in a section was measured on this machine in the same run as the
rest of that section, and every ratio compares figures of that one run; numbers from different
sections or runs are not comparable.
"""


def loadavg():
    try:
        with open("/proc/loadavg", encoding="utf-8") as f:
            return ", ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def nproc():
    try:
        return subprocess.run(["nproc"], check=True, capture_output=True,
                              text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return str(os.cpu_count())


def git_state():
    try:
        head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain"], check=True,
                               capture_output=True, text=True).stdout.strip()
        return head + (" with uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def build_type(binary):
    cache = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(binary))),
                         "CMakeCache.txt")
    try:
        with open(cache, encoding="utf-8") as f:
            m = re.search(r"^CMAKE_BUILD_TYPE:\w+=(.*)$", f.read(), re.M)
            return m.group(1) if m and m.group(1) else "unknown"
    except OSError:
        return "unknown"


def write_section(heading, section, report=REPORT):
    """Replaces the section under `heading` (to the next level-2 heading) with `section`."""
    text = FILE_HEADER
    if os.path.exists(report):
        with open(report, encoding="utf-8") as f:
            text = f.read()
    start = text.find(heading + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        # The section runs to the next level-2 heading (its own ### headings belong to it).
        nxt = re.search(r"^## ", text[start + len(heading):], re.M)
        end = start + len(heading) + nxt.start() if nxt else len(text)
        rest = text[end:]
        text = text[:start] + section + ("\n" + rest if rest else "")
    with open(report, "w", encoding="utf-8") as f:
        f.write(text)


def fmt_rate(x):
    if x is None:
        return "–"
    if x >= 1e6:
        return f"{x / 1e6:.2f} M"
    if x >= 1e3:
        return f"{x / 1e3:.1f} k"
    return f"{x:.0f}"
