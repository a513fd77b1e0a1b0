"""What every benchmark records with its figures (DESIGN §12): the machine and the commit."""
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


def git_commit():
    """The commit the benchmark ran at, with "-dirty" when the tree had uncommitted changes."""
    try:
        c = subprocess.check_output(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], text=True).strip()
        dirty = subprocess.call(["git", "-C", ROOT, "diff", "--quiet"]) != 0
        return c + ("-dirty" if dirty else "")
    except Exception:
        return None


def read_metrics(run):
    """(train lines, eval lines) of RUN/metrics.jsonl, as `curaclip train` writes it on rank 0."""
    train, evals = [], []
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            m = json.loads(line)
            (evals if m.get("eval") else train).append(m)
    return train, evals
