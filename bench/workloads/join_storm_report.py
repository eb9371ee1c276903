"""The report of a join storm (``bench/join_storm.py``): medians, ratios, a projection, a profile, a plot.

Everything here works from what a run saved (``join_storm.csv``, one row
per storm, and ``join_storm.json``, the run's settings and profiles), so
that the report can be made again without running a storm.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import pstats
import statistics
from pathlib import Path

PROJECTED_RANKS = 10_000
#: The order kinds are shown in.
KIND_ORDER = ("bare-tcp", "bare-tls", "ours")


# -- saved results -----------------------------------------------------------------------------


def write_results(out: Path, rows: list[dict], meta: dict) -> None:
    """Save the rows to ``join_storm.csv`` and the run's settings and profiles to ``join_storm.json``."""
    with (out / "join_storm.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "join_storm.json").write_text(json.dumps(meta, indent=1))


def read_results(out: Path) -> tuple[list[dict], dict]:
    """The rows and the run's settings that :func:`write_results` saved in ``out``."""
    with (out / "join_storm.csv").open() as f:
        rows = [{key: parse_cell(value) for key, value in row.items()} for row in csv.DictReader(f)]
    return rows, json.loads((out / "join_storm.json").read_text())


def parse_cell(text: str):
    """A CSV cell back as the bool, int, float or string it was written from."""
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def kinds_and_sizes(rows: list[dict]) -> tuple[list[str], list[int]]:
    kinds = [k for k in KIND_ORDER if any(r["kind"] == k for r in rows)]
    return kinds, sorted({r["n"] for r in rows})


# -- medians and fits --------------------------------------------------------------------------


def medians(rows: list[dict], kind: str, n: int) -> dict | None:
    """Medians of every number of the storms of ``kind`` at ``n``, and their count and spread."""
    group = [r for r in rows if r["kind"] == kind and r["n"] == n]
    if not group:
        return None
    numbers = [k for k, v in group[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    result = {k: statistics.median(r[k] for r in group) for k in numbers}
    result["runs"] = len(group)
    result["complete_runs"] = sum(r["complete"] for r in group)
    result["cpu_ms_range"] = (min(r["cpu_ms_per_worker"] for r in group), max(r["cpu_ms_per_worker"] for r in group))
    return result


def least_squares(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Intercept and slope of the straight line nearest to the points (xs, ys)."""
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / spread
    return mean_y - slope * mean_x, slope


#: Models of the scheduler's CPU per joining worker, c(N) = a + b·x(N), by name: x(N).
#: A fixed cost per worker plus one per storm (N in all); a per-worker cost
#: that grows with ln N (N log N in all); one that grows with N, as when each
#: join looks at every worker already there (N² in all).
MODELS = {
    "a + b/N": lambda n: 1 / n,
    "a + b·ln N": math.log,
    "a + b·N": lambda n: n,
}


@dataclasses.dataclass(frozen=True)
class Fit:
    """A model of the scheduler's CPU seconds per joining worker, fitted to medians."""

    model: str
    a: float
    b: float
    #: Root mean square of the fit's errors, in seconds per worker.
    rms_error: float

    def per_worker(self, n: float) -> float:
        return self.a + self.b * MODELS[self.model](n)

    def cpu(self, n: float) -> float:
        return n * self.per_worker(n)

    @classmethod
    def of(cls, model: str, points: list[tuple[int, float]]) -> Fit:
        """``model`` fitted to (N, seconds per worker) points by least squares."""
        x = MODELS[model]
        a, b = least_squares([x(n) for n, _ in points], [c for _, c in points])
        error = statistics.fmean((a + b * x(n) - c) ** 2 for n, c in points)
        return cls(model, a, b, math.sqrt(error))


def projection(rows: list[dict]) -> dict:
    """For each kind: every model fitted, the best fit, and the scheduler's open files at :data:`PROJECTED_RANKS`."""
    kinds, sizes = kinds_and_sizes(rows)
    result = {}
    for kind in kinds:
        measured = {n: medians(rows, kind, n) for n in sizes if medians(rows, kind, n)}
        points = [(n, m["scheduler_cpu_s"] / n) for n, m in measured.items()]
        if len(points) < 3:  # two points fit any of the models exactly
            continue
        fitted = [Fit.of(model, points) for model in MODELS]
        largest = measured[max(measured)]
        result[kind] = {
            "fits": fitted,
            "best": min(fitted, key=lambda fit: fit.rms_error),
            "fds": largest["fds_before"] + largest["settled_fds_per_worker"] * PROJECTED_RANKS,
        }
    return result


# -- the summary -------------------------------------------------------------------------------


def summary(rows: list[dict], meta: dict) -> str:
    """The Markdown summary of a run: medians, ratios, the projection, the profiles."""
    _, sizes = kinds_and_sizes(rows)
    repeats = len({r["repeat"] for r in rows})
    lines = [
        "# Join storm",
        "",
        f"- date: {meta['date']}; {os.cpu_count()} cores; load {meta['load']:.1f} at the end; "
        f"Python {meta['python']}; distributed {meta['distributed']}",
        f"- command: `{meta['command']}`",
        f"- package: dask_runners as of {meta['package']}; {repeats} repeats, kinds interleaved; medians",
        f"- workers in {meta['processes']} processes at nice {meta['nice']}; the scheduler in its own process; "
        f"our shutdown deadline {meta['shutdown']:g} s",
        "- scheduler CPU: the scheduler process's user + system seconds from the barrier's release until all N "
        "workers run; failed TLS handshakes: the scheduler's warnings of handshakes its peer gave up on "
        "(distributed's connect gives its first try a fifth of its 30 s timeout, then tries again); heartbeats: those the scheduler answered meanwhile, and the CPU of its handler "
        "(without reading and answering them); fds, sockets: its open files and sockets then, less those before the storm, per worker; "
        "settled: the same once the workers' first heartbeats have opened their connections; "
        "close: from the end of the storm until every process has exited",
        "",
        "| N | kind | complete | scheduler CPU (s) | CPU per worker (ms) | min–max (ms) | all registered (s) "
        "| all running (s) | failed TLS handshakes per worker | heartbeats per worker "
        "| heartbeat handler (ms per worker) | workers' CPU per worker (ms) | close (s) | tracebacks | errors "
        "| warnings |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, kind, m in each_median(rows):
        low, high = m["cpu_ms_range"]
        lines.append(
            f"| {n} | {kind} | {m['complete_runs']}/{m['runs']} | {m['scheduler_cpu_s']:.2f} "
            f"| {m['cpu_ms_per_worker']:.2f} | {low:.2f}–{high:.2f} | {m['registered_s']:.1f} "
            f"| {m['running_s']:.1f} | {m['abandoned_handshakes_per_worker']:.2f} | {m['heartbeats_per_worker']:.2f} | {m['heartbeat_handler_ms_per_worker']:.3f} "
            f"| {m['worker_cpu_ms_per_worker']:.1f} | {m['close_s']:.1f} "
            f"| {m['tracebacks']:.0f} | {m['errors']:.0f} | {m['warnings']:.0f} |"
        )
    lines += ["", "What the scheduler holds (medians):", "",
              "| N | kind | fds per worker | sockets per worker | settled fds per worker | stream comms "
              "| control members | scheduler peak memory (MB) | workers' peak memory per worker (MB) |",
              "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for n, kind, m in each_median(rows):
        lines.append(
            f"| {n} | {kind} | {m['fds_per_worker']:.2f} | {m['sockets_per_worker']:.2f} "
            f"| {m['settled_fds_per_worker']:.2f} | {m['stream_comms']:.0f} | {m['control_members']:.0f} "
            f"| {m['scheduler_memory_mb']:.0f} | {m['worker_memory_mb_per_worker']:.1f} |"
        )
    lines += ratio_lines(rows, sizes)
    lines += projection_lines(projection(rows))
    if meta.get("profiles"):
        lines += profile_lines(meta["profiles"], meta["profile_size"])
    return "\n".join(lines) + "\n"


def each_median(rows: list[dict]):
    """(N, kind, medians) for every size and kind that ran, by size, then kind."""
    kinds, sizes = kinds_and_sizes(rows)
    for n in sizes:
        for kind in kinds:
            m = medians(rows, kind, n)
            if m is not None:
                yield n, kind, m


def ratio_lines(rows: list[dict], sizes: list[int]) -> list[str]:
    lines = ["", "Ratios of medians:", "",
             "| N | CPU per worker, ours / bare-tls | bare-tls / bare-tcp | all running, ours / bare-tls "
             "| bare-tls / bare-tcp |",
             "|---:|---:|---:|---:|---:|"]
    for n in sizes:
        ours, tls, tcp = (medians(rows, kind, n) for kind in ("ours", "bare-tls", "bare-tcp"))
        lines.append(f"| {n} | {ratio(ours, tls, 'cpu_ms_per_worker')} | {ratio(tls, tcp, 'cpu_ms_per_worker')} "
                     f"| {ratio(ours, tls, 'running_s')} | {ratio(tls, tcp, 'running_s')} |")
    return lines


def ratio(top: dict | None, bottom: dict | None, key: str) -> str:
    if top is None or bottom is None or not bottom[key]:
        return ""
    return f"{top[key] / bottom[key]:.2f}×"


def projection_lines(projected: dict) -> list[str]:
    lines = ["", f"Projection to {PROJECTED_RANKS:,} worker ranks: each model of the scheduler's CPU per joining "
                 "worker, c(N) = a + b·x(N), fitted by least squares to the medians above; the best fit "
                 "(smallest RMS error) in bold:", "",
             "| kind | model c(N) | a (ms) | b (ms) | RMS error (ms) | CPU per worker at 10 000 (ms) "
             "| scheduler CPU at 10 000 (s) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for kind, p in projected.items():
        for fit in p["fits"]:
            cells = [fit.model, f"{1e3 * fit.a:.3f}", f"{1e3 * fit.b:.4g}", f"{1e3 * fit.rms_error:.3f}",
                     f"{1e3 * fit.per_worker(PROJECTED_RANKS):.2f}", f"{fit.cpu(PROJECTED_RANKS):.0f}"]
            if fit is p["best"]:
                cells = [f"**{cell}**" for cell in cells]
            lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines += [""] + [f"- {kind}: the scheduler's open files at {PROJECTED_RANKS:,} ranks, at the settled fds per "
                     f"worker of the largest storm: {p['fds']:,.0f}" for kind, p in projected.items()]
    return lines


def profile_lines(profiles: dict, n: int) -> list[str]:
    lines = ["", f"Where the scheduler's CPU goes: one more storm of {n} per kind, the scheduler under cProfile "
                 "(CPU time; cProfile slows Python code more than C code, so compare the shares, not the "
                 "totals). Milliseconds per joining worker:", "",
             "| kind | profiled in all | TLS handshakes | distributed's version check | heartbeats "
             "| dask_runners' own functions | costliest functions (own time, calls) |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for kind, p in profiles.items():
        top = "; ".join(f"`{where}` {own:.2f} ({calls})" for own, calls, where in p["top"])
        lines.append(f"| {kind} | {p['total']:.2f} | {p['handshakes']:.2f} | {p['versions']:.2f} "
                     f"| {p['heartbeats']:.2f} | {p['ours']:.2f} | {top} |")
    return lines


def where_the_cpu_goes(path: Path, n: int) -> dict:
    """Scheduler CPU ms per joining worker in a profile of a storm of ``n``.

    In all; in TLS handshakes; in distributed's check of every worker's
    package versions at registration (``versions.error_message``, with what
    it calls); in the heartbeat handler (``Scheduler.heartbeat_worker``,
    with what it calls); in dask_runners' own functions (their own time);
    and the five costliest functions by their own time.
    """
    stats = pstats.Stats(str(path)).stats
    total = handshakes = versions = heartbeats = ours = 0.0
    functions = []
    for (filename, line, name), (_, calls, own, cumulative, _) in stats.items():
        total += own
        if "do_handshake" in name:
            handshakes += own
        if filename.endswith(os.path.join("distributed", "versions.py")) and name == "error_message":
            versions += cumulative
        if filename.endswith(os.path.join("distributed", "scheduler.py")) and name == "heartbeat_worker":
            heartbeats += cumulative
        if f"{os.sep}dask_runners{os.sep}" in filename:
            ours += own
        where = name if filename == "~" else f"{Path(filename).parent.name}/{Path(filename).name}:{line}({name})"
        functions.append((own, calls, where))
    functions.sort(reverse=True)
    per_worker = 1e3 / n
    return {
        "total": total * per_worker, "handshakes": handshakes * per_worker, "versions": versions * per_worker,
        "heartbeats": heartbeats * per_worker, "ours": ours * per_worker, "top": [(own * per_worker, calls, where) for own, calls, where in functions[:5]],
    }


# -- the plot ----------------------------------------------------------------------------------


def plot(rows: list[dict], path: Path) -> bool:
    """Scheduler CPU per joining worker (with the best fits out to 10 000), time until all run, fds per worker."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print("--plot: matplotlib is not installed (pip install -e .[bench]); no plot")
        return False
    kinds, sizes = kinds_and_sizes(rows)
    projected = projection(rows)
    figure, (cpu_axis, time_axis, fd_axis) = plt.subplots(1, 3, figsize=(15, 4.6))
    for kind in kinds:
        measured = [(n, medians(rows, kind, n)) for n in sizes if medians(rows, kind, n)]
        ns = [n for n, _ in measured]
        cpu = [m["cpu_ms_per_worker"] for _, m in measured]
        spread = [[c - m["cpu_ms_range"][0] for c, (_, m) in zip(cpu, measured)],
                  [m["cpu_ms_range"][1] - c for c, (_, m) in zip(cpu, measured)]]
        line = cpu_axis.errorbar(ns, cpu, yerr=spread, marker="o", capsize=3, label=kind)[0]
        if kind in projected:
            best = projected[kind]["best"]
            span = [ns[0] * (PROJECTED_RANKS / ns[0]) ** (i / 40) for i in range(41)]
            cpu_axis.plot(span, [1e3 * best.per_worker(n) for n in span], linestyle="--", linewidth=1,
                          color=line.get_color())
        time_axis.plot(ns, [m["running_s"] for _, m in measured], marker="o", label=kind)
        line = fd_axis.plot(ns, [m["settled_fds_per_worker"] for _, m in measured], marker="o",
                            label=f"{kind}, settled")[0]
        fd_axis.plot(ns, [m["fds_per_worker"] for _, m in measured], marker="x", linestyle=":",
                     color=line.get_color(), label=f"{kind}, all running")
    cpu_axis.set(title="scheduler CPU per joining worker\n(median, min–max; dashed: best fit, to 10 000)",
                 xlabel="workers joining at once", ylabel="ms", xscale="log")
    time_axis.set(title="until all workers run", xlabel="workers joining at once", ylabel="s",
                  xscale="log", yscale="log")
    fd_axis.set(title="scheduler's open files per worker\n(when all run, and settled after heartbeats)",
                xlabel="workers joining at once", ylabel="files", xscale="log")
    for axis in (cpu_axis, fd_axis):
        axis.set_ylim(bottom=0)
    for axis in (cpu_axis, time_axis, fd_axis):
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize="small")
        ticks = sizes + ([PROJECTED_RANKS] if axis is cpu_axis and projected else [])
        axis.set_xticks(ticks, [f"{n:,}" for n in ticks])
        axis.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
