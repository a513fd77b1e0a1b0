#!/usr/bin/env python3
"""Checks every #include of the library folders against tests/layers/layers.txt.

    python3 tests/layers/check_layers.py            # exit 1 naming each forbidden include
    python3 tests/layers/check_layers.py --graph    # the folder graph: edge, count, first include

An include "dir/file.h" is an edge from the including file's folder to folder `dir`
(quoted includes without a '/' stay in the folder). An edge is allowed when the target
is the folder itself or reachable along the arrows of layers.txt. The same file gives
each CMake library its include path (CMakeLists.txt), so the build refuses what this
script reports; the script names the rule and the line.
"""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SOURCES = (".h", ".hpp", ".cpp", ".cu", ".cuh", ".inc")


def read_layers(path):
    folders, deps, system = {}, {}, {}
    for n, line in enumerate(open(path), 1):
        line = line.split("#", 1)[0].strip() if not line.lstrip().startswith("!") else line.strip()
        if not line:
            continue
        if line.startswith("!"):
            header, *allowed = line[1:].split()
            system[header] = set(allowed)
            continue
        left, _, right = line.partition(":")
        name, where = left.split()
        folders[name] = where
        deps[name] = right.split()
    for name, ds in deps.items():
        for d in ds:
            # CMake builds the libraries in this order: a folder after those it uses.
            if d not in folders or list(folders).index(d) > list(folders).index(name):
                sys.exit(f"{path}: folder {name} lists {d}, which is not a folder listed before it")
    return folders, deps, system


def closure(deps):
    out = {}
    for name in deps:
        seen, todo = set(), list(deps[name])
        while todo:
            d = todo.pop()
            if d not in seen:
                seen.add(d)
                todo.extend(deps[d])
        out[name] = seen
    return out


def includes(folders):
    """(folder, file, line, included text, is system include) for every include."""
    pat = re.compile(r'\s*#\s*include\s*([<"])([^>"]+)[>"]')
    for name, where in folders.items():
        base = os.path.join(ROOT, where)
        for f in sorted(os.listdir(base)):
            if not f.endswith(SOURCES):
                continue
            rel = os.path.join(where, f)
            for n, line in enumerate(open(os.path.join(base, f), errors="replace"), 1):
                m = pat.match(line)
                if m:
                    yield name, rel, n, m.group(2), m.group(1) == "<"


def main():
    folders, deps, system = read_layers(os.path.join(HERE, "layers.txt"))
    allowed = closure(deps)
    edges, bad = {}, []
    for name, rel, n, inc, angled in includes(folders):
        for header, who in system.items():
            if inc.startswith(header) and name not in who:
                bad.append(f"{rel}:{n}: {name} includes <{inc}>, which only {', '.join(sorted(who))} may include")
        if angled or "/" not in inc:
            continue
        target = inc.split("/", 1)[0]
        if target not in folders or target == name:
            continue
        edges.setdefault((name, target), []).append(f"{rel}:{n}")
        if target not in allowed[name]:
            ok = ", ".join(sorted(allowed[name])) or "nothing"
            bad.append(f"{rel}:{n}: {name} -> {target} (\"{inc}\") runs against the layers: {name} may include {ok}")
    if "--graph" in sys.argv:
        for (a, b), where in sorted(edges.items()):
            print(f"{a:10s} -> {b:10s} {len(where):4d}  e.g. {where[0]}")
        print(f"{len(edges)} edges between {len(folders)} folders")
    for line in bad:
        print(line)
    if bad:
        print(f"{len(bad)} forbidden include(s); the rule: tests/layers/layers.txt")
        return 1
    if "--graph" not in sys.argv:
        print(f"layers: {sum(len(v) for v in edges.values())} includes across {len(edges)} folder edges, all allowed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
