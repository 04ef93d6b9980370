#!/usr/bin/python3
"""Parses a Prometheus text exposition (format 0.0.4) with Prometheus' own Python parser
(Debian's python3-prometheus-client) and prints its samples as one JSON object:
{"name{label=\"value\",...}": value, ...}, labels sorted by name. Also checks that every family
has a TYPE and HELP line and each histogram's +Inf bucket equals its _count.
Run with Debian's /usr/bin/python3 (where the package is). Exits 1 with one line on stderr when the text does not parse or a check fails.
  usage: prom_json.py FILE"""
import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families


def key(name, labels):
    if not labels:
        return name
    inner = ",".join('%s="%s"' % (k, labels[k]) for k in sorted(labels))
    return "%s{%s}" % (name, inner)


def main():
    text = open(sys.argv[1], encoding="utf-8").read()
    out = {}
    try:
        for fam in text_string_to_metric_families(text):
            if fam.type == "unknown" or not fam.documentation:
                raise ValueError("family %s has no TYPE or HELP line" % fam.name)
            for s in fam.samples:
                k = key(s.name, s.labels)
                if k in out:
                    raise ValueError("sample %s appears twice" % k)
                out[k] = s.value
    except ValueError as e:
        print("prom_json: %s: %s" % (sys.argv[1], e), file=sys.stderr)
        return 1
    for k, v in out.items():
        if k.endswith('_bucket{le="+Inf"}'):
            count = k[: -len('_bucket{le="+Inf"}')] + "_count"
            if out.get(count) != v:
                print("prom_json: %s: +Inf bucket %s != %s" % (k, v, out.get(count)), file=sys.stderr)
                return 1
    print(json.dumps({k: (None if math.isnan(v) else v) for k, v in out.items()}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
