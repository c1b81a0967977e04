"""Shared helpers of the tokenizer reference scripts (tests/ref/tok_*.py).

The corpus file format (tests/data/tokenizer/*.txt): one string per line, bytes escaped as
\\\\ \\n \\r \\t and \\xNN (other control bytes, DEL, and bytes that are not valid UTF-8);
everything else is the UTF-8 text itself. tests/test_tokenizer*.c read the same format.
Id files: one line per corpus line, ids separated by single spaces (an empty line: no ids).
"""
import os

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DATA = os.path.join(ROOT, "tests", "data", "tokenizer")
SHARED = os.environ.get("KED_SHARED", "/work/shared")


def escape(b: bytes) -> str:
    out = []
    i = 0
    while i < len(b):
        c = b[i]
        if c == 0x5C:
            out.append("\\\\"); i += 1; continue
        if c == 0x0A:
            out.append("\\n"); i += 1; continue
        if c == 0x0D:
            out.append("\\r"); i += 1; continue
        if c == 0x09:
            out.append("\\t"); i += 1; continue
        if c < 0x20 or c == 0x7F:
            out.append("\\x%02X" % c); i += 1; continue
        if c < 0x80:
            out.append(chr(c)); i += 1; continue
        # a valid UTF-8 character is written as is, anything else byte by byte
        for n in (4, 3, 2):
            try:
                ch = b[i:i + n].decode("utf-8")
                if len(ch) == 1:
                    out.append(ch); i += n; break
            except UnicodeDecodeError:
                pass
        else:
            out.append("\\x%02X" % c); i += 1
    return "".join(out)


def unescape(line: str) -> bytes:
    out = bytearray()
    i = 0
    raw = line.encode("utf-8")
    while i < len(raw):
        c = raw[i]
        if c == 0x5C and i + 1 < len(raw):
            n = raw[i + 1]
            if n == ord("n"): out.append(10); i += 2; continue
            if n == ord("r"): out.append(13); i += 2; continue
            if n == ord("t"): out.append(9); i += 2; continue
            if n == 0x5C: out.append(0x5C); i += 2; continue
            if n == ord("x"):
                out.append(int(raw[i + 2:i + 4], 16)); i += 4; continue
        out.append(c); i += 1
    return bytes(out)


def read_corpus(name="corpus.txt"):
    with open(os.path.join(DATA, name), encoding="utf-8") as f:
        return [unescape(l.rstrip("\n")) for l in f]


def write_ids(name, rows):
    with open(os.path.join(DATA, name), "w") as f:
        for r in rows:
            f.write(" ".join(str(i) for i in r) + "\n")
