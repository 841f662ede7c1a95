"""Latency CDF plots for the benchmarks: gnuplot (Debian's gnuplot-nox,
installed by scripts/setup.sh) draws a PNG from the percentiles the kv
client reports (`latency_cdf_us`: the latency at each percentile 1..100).
"""
import os
import shutil
import subprocess
import tempfile


def cdf_of(load):
    """The percentile latencies of one `ftvm-kv load` report, or None."""
    s = load.get("latency_cdf_us") if load else None
    return [int(v) for v in s.split()] if s else None


def cdf_png(path, title, series):
    """Draws series (name -> 100 latencies in us, percentiles 1..100) as
    CDFs on a log latency axis into path. Returns a line saying where it
    went, or why there is no plot."""
    series = {k: v for k, v in series.items() if v}
    if not series:
        return "latency CDF: no data"
    if not shutil.which("gnuplot"):
        return "latency CDF: not drawn (no gnuplot; scripts/setup.sh installs gnuplot-nox)"
    d = tempfile.mkdtemp(prefix="ftvm-plot-")
    plots = []
    for i, (name, vals) in enumerate(series.items()):
        dat = os.path.join(d, "s%d.dat" % i)
        with open(dat, "w") as f:
            for pc, v in enumerate(vals, 1):
                f.write("%d %f\n" % (max(v, 1), pc / 100.0))
        plots.append("'%s' using 1:2 with steps lw 2 title '%s'" % (dat, name.replace("'", "")))
    script = "\n".join([
        "set terminal pngcairo size 1000,600 noenhanced" if _has_cairo() else "set terminal png size 1000,600",
        "set output '%s'" % path,
        "set title '%s'" % title.replace("'", ""),
        "set logscale x",
        "set xlabel 'request latency (us, log scale)'",
        "set ylabel 'fraction of requests'",
        "set yrange [0:1]",
        "set grid",
        "set key bottom right",
        "plot " + ", ".join(plots),
    ])
    r = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
    shutil.rmtree(d, ignore_errors=True)
    if r.returncode != 0:
        return "latency CDF: gnuplot failed: %s" % r.stderr.strip()[:200]
    return "latency CDF: %s" % path


def _has_cairo():
    r = subprocess.run(["gnuplot", "-e", "set terminal"], capture_output=True, text=True)
    return "pngcairo" in (r.stdout + r.stderr)
