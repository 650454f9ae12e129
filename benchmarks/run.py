"""Side-by-side benchmarks: pebble (this project) against upstream Pebble,
concurrent.futures and multiprocessing.Pool.

Usage::

    python benchmarks/run.py [--quick] [--repeat N] [--only PATTERN]
                             [--impl ours,upstream,futures,multiprocessing]
                             [--json FILE] [--rst] [--timeout SECONDS]
    python benchmarks/run.py --from-json FILE [--rst]

Implementations:

``ours``
    the ``pebble`` package installed in the running interpreter (build and
    install it first, e.g. ``pip install .``).  A source tree ``pebble/``
    without its compiled extension is never picked up: every run starts in
    a temporary directory.
``upstream``
    upstream Pebble from PyPI, installed on first use with
    ``python -m pip install --target benchmarks/.upstream pebble==5.2.3`` and put
    first on PYTHONPATH for its runs only.  If it cannot be installed, its
    rows say so and the other implementations still run.
``futures``, ``multiprocessing``
    ``concurrent.futures`` executors and ``multiprocessing.Pool`` (or
    ``multiprocessing.pool.ThreadPool``), for workloads they can express.

Every workload (see ``benchmarks/workloads.py``) runs in a fresh interpreter
per implementation and per repeat; repeats of one workload are interleaved
across implementations.  The table shows the median of the repeats (default
5, or 3 with ``--quick``; a few long workloads are capped at 3 unless
``--repeat`` is given), the spread (half of max - min, relative to the
median), and two ratios:

``vs ours``
    this row compared with ``ours``;
``vs best baseline``
    this row compared with the best of upstream, futures and
    multiprocessing.

A ratio above 1 means this row is better than the reference (a higher rate,
or a lower time, latency or memory).  "n/a" marks an implementation lacking
a feature the workload needs; a workload that fails its correctness check,
crashes or exceeds the per-run timeout (default 300 s, the run's process
group is then killed) is reported as such, and the exit status is 1.

``--quick`` uses smaller sizes and fewer repeats.  ``--only`` takes a
regular expression searched in workload names (``--only proc_`` or
``--only 'rtt|tiny'``).  ``--json FILE`` saves every sample plus machine
details; ``--from-json FILE`` prints the tables of a saved run again.
``--rst`` prints reStructuredText grid tables (for README.rst) instead of
the terminal tables.  Progress goes to stderr, tables to stdout.
"""

import argparse
import datetime
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOADS_PY = os.path.join(HERE, "workloads.py")
UPSTREAM_DIR = os.path.join(HERE, ".upstream")
#: The release this project is a drop-in for.
UPSTREAM_VERSION = "5.2.3"

sys.path.insert(0, HERE)
import workloads  # noqa: E402

IMPLS = workloads.ALL_IMPLS
BASELINES = ("upstream", "futures", "multiprocessing")
GROUPS = (("thread", "Thread side"),
          ("process", "Process side"),
          ("decorators", "Process decorators"),
          ("map", "Map beyond upstream: buffersize, ordered=False"))


def log(message):
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


# ---------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------

def upstream_version():
    for entry in sorted(os.listdir(UPSTREAM_DIR)):
        match = re.match(r"pebble-(.+)\.dist-info$", entry, re.I)
        if match:
            return match.group(1)
    return "?"


def ensure_upstream():
    """Install upstream Pebble into benchmarks/.upstream if missing.

    Returns (available, version or reason).
    """
    if os.path.exists(os.path.join(UPSTREAM_DIR, "pebble", "__init__.py")):
        return True, upstream_version()
    log("installing upstream Pebble into %s ..." % UPSTREAM_DIR)
    command = [sys.executable, "-m", "pip", "install", "--quiet",
               "--target", UPSTREAM_DIR, "pebble==%s" % UPSTREAM_VERSION]
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              timeout=600)
    except (OSError, subprocess.TimeoutExpired) as error:
        return False, "pip install failed: %s" % error
    if done.returncode != 0 or not os.path.exists(
            os.path.join(UPSTREAM_DIR, "pebble", "__init__.py")):
        tail = done.stdout.strip().splitlines()[-1:] or [""]
        return False, "pip install failed: %s" % tail[0]
    return True, upstream_version()


def child_env(impl):
    env = dict(os.environ)
    env.pop("PEBBLE_BENCH_IMPL", None)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
             if p and os.path.abspath(p) != UPSTREAM_DIR]
    if impl == "upstream":
        paths.insert(0, UPSTREAM_DIR)
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    else:
        env.pop("PYTHONPATH", None)
    return env


def group_members(pgid):
    """Live (non-zombie) processes in process group ``pgid`` (Linux)."""
    members = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return members
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry))
    return members


def kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_one(name, impl, quick, timeout, workdir):
    """Run one workload once in a fresh interpreter; returns a record."""
    command = [sys.executable, WORKLOADS_PY, name, impl]
    if quick:
        command.append("--quick")
    started = time.perf_counter()
    child = subprocess.Popen(command, cwd=workdir, env=child_env(impl),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True)
    try:
        out, err = child.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        kill_group(child.pid)
        try:
            out, err = child.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # pipes held by an escapee
            child.kill()
            out, err = "", ""
        timed_out = True
    wall = time.perf_counter() - started
    record = None
    for line in reversed(out.strip().splitlines()):
        try:
            record = json.loads(line)
            break
        except ValueError:
            continue
    if timed_out:
        record = {"status": "timeout",
                  "reason": "no result after %g s (killed)" % timeout,
                  "stderr": err}
    elif child.returncode != 0 or not isinstance(record, dict):
        lines = err.strip().splitlines() or ["exit status %s"
                                             % child.returncode]
        record = {"status": "error", "reason": lines[-1], "stderr": err}
    # Every pool must have been joined: nothing of the run may survive it.
    deadline = time.monotonic() + 2.0
    strays = group_members(child.pid)
    while strays and time.monotonic() < deadline:
        time.sleep(0.05)
        strays = group_members(child.pid)
    if strays:
        kill_group(child.pid)
        record.setdefault("warnings", []).append(
            "%d process(es) outlived the run" % len(strays))
    record["wall"] = wall
    return record


def run_all(args, selected, impls, upstream):
    results = {}
    available_upstream, upstream_info = upstream
    plan = []
    for name in selected:
        workload = workloads.WORKLOADS[name]
        if args.repeat:
            repeat = args.repeat
        else:
            repeat = 3 if args.quick else 5
            if workload.max_repeat:
                repeat = min(repeat, workload.max_repeat)
        applicable = [i for i in impls if i in workload.impls]
        results[name] = entry = {"repeat": repeat, "impls": {}}
        for impl in applicable:
            entry["impls"][impl] = {"status": "ok", "values": [],
                                    "unit": None, "notes": [],
                                    "warnings": [], "wall": []}
            if impl == "upstream" and not available_upstream:
                entry["impls"][impl].update(status="unavailable",
                                            reason=upstream_info)
        plan.append((name, repeat, applicable))
    total = sum(r * len(a) for _, r, a in plan)
    done = 0
    with tempfile.TemporaryDirectory(prefix="pebble-bench-") as workdir:
        for name, repeat, applicable in plan:
            for round_ in range(repeat):
                for impl in applicable:
                    done += 1
                    state = results[name]["impls"][impl]
                    if state["status"] != "ok":
                        continue  # n/a, failed or unavailable: once is enough
                    record = run_one(name, impl, args.quick, args.timeout,
                                     workdir)
                    absorb(state, record)
                    log("[%d/%d] %-22s %-15s #%d  %s  (%.1f s)"
                        % (done, total, name, impl, round_ + 1,
                           describe_record(record), record["wall"]))
                    if record["status"] in ("error", "timeout"):
                        log(record.get("stderr", "").rstrip())
    return results


def absorb(state, record):
    state["wall"].append(record["wall"])
    for warning in record.get("warnings", []):
        if warning not in state["warnings"]:
            state["warnings"].append(warning)
    if "pebble" in record:
        state["pebble"] = record["pebble"]
    status = record["status"]
    if status == "ok":
        state["values"].append(record["value"])
        state["unit"] = record["unit"]
        state.setdefault("details", []).append(record.get("detail", {}))
        note = record.get("detail", {}).get("note")
        if note and note not in state["notes"]:
            state["notes"].append(note)
    else:
        state["status"] = status
        state["reason"] = record.get("reason", "")


def describe_record(record):
    if record["status"] == "ok":
        return "%s %s" % (fmt(record["value"]), record["unit"])
    return "%s: %s" % (record["status"], record.get("reason", ""))


# ---------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------

def fmt(value):
    magnitude = abs(value)
    if magnitude >= 1e6:
        return "%.2fM" % (value / 1e6)
    if magnitude >= 1e4:
        return "%.1fk" % (value / 1e3)
    if magnitude >= 100:
        return "%.0f" % value
    if magnitude >= 10:
        return "%.1f" % value
    return "%.2f" % value


def fmt_count(n):
    for scale, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n >= scale and n % scale == 0:
            return "%d%s" % (n // scale, suffix)
    return str(n)


def factor(value, reference, better):
    """How many times better ``value`` is than ``reference``."""
    if value is None or reference is None:
        return None
    if better == workloads.HIGHER:
        return value / reference if reference > 0 else None
    return reference / value if value > 0 and reference > 0 else None


def fmt_factor(ratio):
    if ratio is None:
        return "—"
    if ratio < 0.1:
        return "%.2g×" % ratio
    return ("%.2f×" if ratio < 10 else "%.1f×") % ratio


def median_of(state):
    if state["status"] == "ok" and state["values"]:
        return statistics.median(state["values"])
    return None


def table_rows(results, group):
    """Rows of one group's table, its legend and its notes."""
    rows, legend, notes = [], [], {}
    for name, entry in results.items():
        workload = workloads.WORKLOADS[name]
        if workload.group != group or not entry["impls"]:
            continue
        better = workload.better
        medians = {impl: median_of(state)
                   for impl, state in entry["impls"].items()}
        ours = medians.get("ours")
        baselines = [medians[impl] for impl in BASELINES
                     if medians.get(impl) is not None]
        best = None
        if baselines:
            best = (max if better == workloads.HIGHER else min)(baselines)
        sizes = [details[0]["n"] for details in
                 (state.get("details") for state in entry["impls"].values())
                 if details and "n" in details[0]]
        title = workload.title.replace(
            "{n}", fmt_count(sizes[0]) if sizes else "N")
        legend.append("%s: %s; %s is better; %s run(s) each"
                      % (name, title, better, entry.get("repeat") or max(
                          len(state["wall"])
                          for state in entry["impls"].values())))
        first = True
        for impl in IMPLS:
            if impl not in entry["impls"]:
                continue
            state = entry["impls"][impl]
            median = medians[impl]
            if median is None:
                value, unit = state["status"], ""
                spread = ""
            else:
                value, unit = fmt(median), state["unit"]
                values = state["values"]
                spread = ("±%.0f%%" % (50 * (max(values) - min(values))
                                        / abs(median))
                          if len(values) > 1 and median else "")
            rows.append([name if first else "", impl, value, unit,
                         fmt_factor(factor(median, ours, better)),
                         fmt_factor(factor(median, best, better)),
                         spread])
            first = False
            texts = state["notes"] + state["warnings"]
            if state["status"] != "ok":
                texts.append("%s: %s" % (state["status"],
                                         state.get("reason", "")))
            for text in texts:
                notes.setdefault((impl, text), []).append(name)
    noted = ["%s (%s): %s" % (impl, ", ".join(names), text)
             for (impl, text), names in notes.items()]
    return rows, legend, noted


HEADER = ["workload", "impl", "median", "unit", "vs ours",
          "vs best baseline", "spread"]
RIGHT = {2, 4, 5, 6}


def render_terminal(title, rows):
    widths = [max(len(str(r[i])) for r in rows + [HEADER])
              for i in range(len(HEADER))]

    def line(cells):
        return "  ".join(str(c).rjust(w) if i in RIGHT else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=False)))

    out = [title, "=" * len(title), line(HEADER),
           "  ".join("-" * w for w in widths)]
    for row in rows:
        if row[0] and len(out) > 4:
            out.append("")
        out.append(line(row).rstrip())
    return "\n".join(out)


def render_rst(title, rows):
    widths = [max(len(str(r[i])) for r in rows + [HEADER])
              for i in range(len(HEADER))]

    def rule(char):
        return "+" + "+".join(char * (w + 2) for w in widths) + "+"

    def line(cells):
        return "|" + "|".join(
            " " + (str(c).rjust(w) if i in RIGHT else str(c).ljust(w)) + " "
            for i, (c, w) in enumerate(zip(cells, widths, strict=False))) + "|"

    out = [title, "~" * len(title), "", rule("-"), line(HEADER), rule("=")]
    for row in rows:
        out.append(line(row))
        out.append(rule("-"))
    return "\n".join(out)


def render(report, rst=False):
    meta = report["meta"]
    out = []
    head = ("Python %s on %s, %s CPUs; %s mode" % (
        meta["python"], meta["platform"], meta["cpus"],
        "quick (smaller sizes)" if meta["quick"] else "full"))
    if "upstream" in meta["impls"]:
        head += "; upstream Pebble %s" % meta["upstream"]
    if "ours" in meta["impls"]:
        head += "; ours: pebble %s" % (meta.get("ours") or "not importable")
    out.append(head)
    out.append("")
    for group, title in GROUPS:
        rows, legend, notes = table_rows(report["results"], group)
        if not rows:
            continue
        if rst:
            out.append(render_rst(title, rows))
            out.append("")
            out.extend("- " + line for line in legend + notes)
        else:
            out.append(render_terminal(title, rows))
            out.append("")
            out.extend(legend)
            out.extend("note: " + line for line in notes)
        out.append("")
    out.append("Ratios: how the row compares with the reference; above 1 "
               "means better (higher rate, lower time/latency/memory).")
    return "\n".join(out)


def ours_origin(results):
    for entry in results.values():
        state = entry["impls"].get("ours")
        if state and state.get("pebble"):
            origin = state["pebble"]
            return "%s (%s)" % (origin.get("version"), origin.get("file"))
    return None


def failed(results):
    return [(name, impl) for name, entry in results.items()
            for impl, state in entry["impls"].items()
            if state["status"] in ("error", "timeout")]


# ---------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(
        description="Benchmark pebble against upstream Pebble, "
                    "concurrent.futures and multiprocessing.")
    parser.add_argument("--quick", action="store_true",
                        help="smaller sizes, fewer repeats")
    parser.add_argument("--repeat", type=int, default=0,
                        help="runs per workload and implementation")
    parser.add_argument("--only", metavar="PATTERN",
                        help="regular expression matched in workload names")
    parser.add_argument("--impl", default=",".join(IMPLS),
                        help="comma-separated: %s" % ",".join(IMPLS))
    parser.add_argument("--json", metavar="FILE",
                        help="save all samples and machine details")
    parser.add_argument("--from-json", metavar="FILE",
                        help="print the tables of a saved run")
    parser.add_argument("--rst", action="store_true",
                        help="print reStructuredText tables")
    parser.add_argument("--timeout", type=float, default=300,
                        help="seconds allowed per run (default 300)")
    args = parser.parse_args()

    if args.from_json:
        with open(args.from_json) as f:
            report = json.load(f)
        print(render(report, args.rst))
        return 0

    impls = [i.strip() for i in args.impl.split(",") if i.strip()]
    unknown = [i for i in impls if i not in IMPLS]
    if unknown:
        parser.error("unknown implementation(s): %s" % ", ".join(unknown))
    impls = [i for i in IMPLS if i in impls]
    selected = [name for name in workloads.WORKLOADS
                if not args.only or re.search(args.only, name)]
    if not selected:
        parser.error("no workload matches %r" % args.only)
    if args.repeat < 0:
        parser.error("--repeat must be positive")

    upstream = (False, "not requested")
    if "upstream" in impls:
        upstream = ensure_upstream()
        if not upstream[0]:
            log("warning: upstream Pebble skipped: %s" % upstream[1])

    started = time.perf_counter()
    results = run_all(args, selected, impls, upstream)
    elapsed = time.perf_counter() - started
    report = {
        "meta": {
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(terse=True),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "quick": args.quick,
            "impls": impls,
            "upstream": upstream[1] if upstream[0] else
            "unavailable (%s)" % upstream[1],
            "ours": None,
            "seconds": elapsed,
        },
        "results": results,
    }
    report["meta"]["ours"] = ours_origin(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, ensure_ascii=False)
        log("saved %s" % args.json)
    log("total %.0f s" % elapsed)
    print(render(report, args.rst))
    bad = failed(results)
    if bad:
        log("FAILED: " + ", ".join("%s/%s" % pair for pair in bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
