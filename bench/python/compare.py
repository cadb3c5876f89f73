"""Side-by-side table of the Rust and Python workload figures.

Reads two files of `Wn key=value ...` lines (as printed by the Rust bench and by
workloads.py), pairs lines of the same workload and variant, and prints every shared
figure with the ratio in aqueduct's favour (higher is better for aqueduct: throughputs
are rust/python, latencies and costs python/rust).

Usage: python3 compare.py rust.txt python.txt
"""
import sys

VARIANT_KEYS = ("batch_timeout_ms", "size", "fib", "stages", "batch_size")
LOWER_IS_BETTER = ("latency", "cost")


def parse(path):
    lines = []
    for raw in open(path):
        parts = raw.split()
        if not parts or not parts[0].startswith("W") or not parts[0][1:].isdigit():
            continue
        fields = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        lines.append((parts[0], fields))
    return lines


def variant(fields):
    return tuple((k, fields[k]) for k in VARIANT_KEYS if k in fields)


def main(rust_path, python_path):
    rust, python = parse(rust_path), parse(python_path)
    print("| workload | variant | figure | aqueduct (Rust) | Aqueduct 1.15.0 (Python) | ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, py in python:
        for rname, rs in rust:
            if rname != name or variant(rs) != variant(py):
                continue
            label = " ".join(f"{k}={v}" for k, v in variant(rs))
            label += f" rust:{rs.get('isolation', '-')} py:{py.get('isolation', '-')}"
            for key, value in py.items():
                if key in rs and key not in VARIANT_KEYS and key != "isolation":
                    try:
                        r, p = float(rs[key]), float(value)
                    except ValueError:
                        continue
                    lower = any(word in key for word in LOWER_IS_BETTER)
                    ratio = (p / r if lower else r / p) if min(r, p) > 0 else float("nan")
                    print(f"| {name} | {label} | {key} | {rs[key]} | {value} | {ratio:.2f}x |")


if __name__ == "__main__":
    main(*sys.argv[1:3])
