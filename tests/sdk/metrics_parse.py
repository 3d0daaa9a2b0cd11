"""Scrape an ossmount /metrics endpoint and parse it with the reference Prometheus text
parser (the `prometheus_client` package), printing what it found as JSON:

    {"families": {"name": "counter" | "gauge" | "histogram" | ...},
     "samples": [["sample_name", {"label": "value"}, value], ...]}

The parser raises on anything that is not valid text exposition format, and this script
also checks what the parser leaves to the exporter: every family has HELP text, counters
end in _total, histogram buckets are cumulative and end at +Inf equal to _count.

Usage: metrics_parse.py URL
"""

import json
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def main():
    url = sys.argv[1]
    with urllib.request.urlopen(url, timeout=10) as resp:
        ctype = resp.headers.get("Content-Type", "")
        text = resp.read().decode("utf-8")
    if not ctype.startswith("text/plain") or "version=0.0.4" not in ctype:
        sys.exit(f"unexpected Content-Type {ctype!r}")
    families = {}
    samples = []
    for fam in text_string_to_metric_families(text):
        if not fam.name.startswith("ossmount_"):
            sys.exit(f"metric {fam.name} lacks the ossmount_ prefix")
        if not fam.documentation:
            sys.exit(f"metric {fam.name} has no HELP")
        families[fam.name] = fam.type
        buckets = {}
        for s in fam.samples:
            samples.append([s.name, s.labels, s.value])
            if fam.type == "histogram" and s.name.endswith("_bucket"):
                key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
                buckets.setdefault(key, []).append((s.labels["le"], s.value))
        if fam.type == "counter":
            # The parser strips _total from a counter family's name; its samples keep it.
            if not all(s.name.endswith("_total") for s in fam.samples):
                sys.exit(f"counter {fam.name} has samples without _total")
        for key, bs in buckets.items():
            values = [v for _, v in bs]
            if values != sorted(values):
                sys.exit(f"{fam.name}{dict(key)}: buckets are not cumulative: {bs}")
            if bs[-1][0] != "+Inf":
                sys.exit(f"{fam.name}{dict(key)}: last bucket is not +Inf")
            count = [s.value for s in fam.samples
                     if s.name == fam.name + "_count"
                     and all(s.labels.get(k) == v for k, v in key)]
            if count != [bs[-1][1]]:
                sys.exit(f"{fam.name}{dict(key)}: _count {count} != +Inf bucket {bs[-1][1]}")
    json.dump({"families": families, "samples": samples}, sys.stdout)


if __name__ == "__main__":
    main()
