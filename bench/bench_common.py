"""What every benchmark records with its figures (docs/architecture.md §Benchmark results): the machine and the commit."""
import json
import os
import platform
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(gpu=None):
    """{"cpu", "cores", "gpu"}: the CPU model, its logical cores, the GPU (None on CPU runs)."""
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "gpu": gpu}


def _read_commit():
    try:
        c = subprocess.check_output(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], text=True).strip()
        dirty = subprocess.call(["git", "-C", ROOT, "diff", "--quiet"]) != 0
        return c + ("-dirty" if dirty else "")
    except Exception:
        return None


# Read when the benchmark starts (every bench imports this module first), not when it
# writes its result: a run of an hour must not record a commit made while it ran.
_COMMIT_AT_START = _read_commit()


def git_commit():
    """The commit the benchmark started at, with "-dirty" when the tree had uncommitted changes."""
    return _COMMIT_AT_START


def read_metrics(run):
    """(train lines, eval lines) of RUN/metrics.jsonl, as `curaclip train` writes it on rank 0."""
    train, evals = [], []
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            m = json.loads(line)
            (evals if m.get("eval") else train).append(m)
    return train, evals


def ensure_venv(script, packages):
    """Re-runs `script` (a benchmark's __file__) with bench/.venv's Python, made on first
    use with the CURRENT PyPI releases of `packages` (the peers are bench tools, never
    build dependencies). Missing packages are installed into an existing venv."""
    import sys
    venv = os.path.join(ROOT, "bench", ".venv")
    py = os.path.join(venv, "bin", "python")
    if os.path.realpath(sys.prefix) != os.path.realpath(venv):
        if not os.path.exists(py):
            subprocess.check_call([sys.executable, "-m", "venv", venv])
        subprocess.check_call([py, "-m", "pip", "install", "-q", "--upgrade"] + list(packages))
        os.execv(py, [py, os.path.abspath(script)] + sys.argv[1:])


def load_average():
    """The 1-minute load average (how busy the machine was while it measured)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def write_result(path, result):
    """Writes a benchmark's result JSON (indented) to path, making its folder, and says so."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print("wrote", path)
