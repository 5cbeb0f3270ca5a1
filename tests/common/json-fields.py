#!/usr/bin/env python3
"""The fields of JSON lines, as a C test can compare them byte for byte.

Usage: json-fields.py FILE

Reads FILE as UTF-8 (strictly: a byte that is not UTF-8 is an error) and
parses each of its lines with Python's json module as one JSON object
(strict: no raw control character in a string, no NaN or Infinity, no key
twice, no value but strings, numbers and null).  Prints one line per line
of FILE: its fields in their order, KEY=VALUE separated by tabs, where
VALUE is
    s:TEXT   a string: its UTF-8 bytes, each byte outside printable
             ASCII and the backslash written \\xNN;
    i:N      an integer;
    f:N.NNN  a number with a fraction, to three decimals;
    null     null.
On the first line that is not such an object it says why on stderr and
exits 1.
"""
import json
import sys


class Fields(list):
    """An object's (key, value) pairs, in their order."""


def pairs(items):
    keys = [k for k, _ in items]
    if len(set(keys)) != len(keys):
        raise ValueError("a key twice")
    return Fields(items)


def constant(name):
    raise ValueError("not a JSON number: " + name)


def text(s):
    out = []
    for b in s.encode("utf-8"):
        out.append(chr(b) if 0x20 <= b < 0x7F and b != 0x5C else "\\x%02x" % b)
    return "".join(out)


def value(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        raise ValueError("a boolean")
    if isinstance(v, str):
        return "s:" + text(v)
    if isinstance(v, int):
        return "i:%d" % v
    if isinstance(v, float):
        return "f:%.3f" % v
    raise ValueError("a value that is a " + type(v).__name__)


def main():
    with open(sys.argv[1], "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for n, raw in enumerate(lines, 1):
        try:
            obj = json.loads(raw.decode("utf-8"), object_pairs_hook=pairs,
                             parse_constant=constant)
            if not isinstance(obj, Fields):
                raise ValueError("not an object")
            print("\t".join("%s=%s" % (text(k), value(v)) for k, v in obj))
        except ValueError as e:  # json.JSONDecodeError and UnicodeDecodeError too
            sys.stderr.write("line %d: %s: %r\n" % (n, e, raw))
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
