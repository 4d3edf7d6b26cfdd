#!/usr/bin/env python3
"""Extracts one novel from the janeaustenr R package's lazy-load database as plain text.

usage: extract_austen.py Rdata.rdb FIRST_LINE > book.txt

Rdata.rdb (in Debian's r-cran-janeaustenr, /usr/lib/R/site-library/janeaustenr/data/) is a
concatenation of objects, each a 4-byte big-endian length followed by a zlib stream holding an R
serialization (XDR, version 3) of a character vector: one element per line of a book. The book is
picked by its first line ("Persuasion", "PRIDE AND PREJUDICE", ...); its lines are written joined
by newlines, NA lines as empty ones. Only the standard library is used."""
import struct
import sys
import zlib


def objects(data):
    pos = 0
    while pos < len(data):
        d = zlib.decompressobj()
        out = d.decompress(data[pos + 4:])
        yield out
        pos = len(data) - len(d.unused_data)


def lines(blob):
    if blob[:2] != b"X\n":
        return None
    p = 2 + 12                                    # format, then 3 ints: versions
    enc = struct.unpack(">i", blob[p:p + 4])[0]   # native encoding name
    p += 4 + enc
    flags, n = struct.unpack(">Ii", blob[p:p + 8])
    p += 8
    if flags & 0xFF != 16:                        # STRSXP
        return None
    out = []
    for _ in range(n):
        _, ln = struct.unpack(">Ii", blob[p:p + 8])
        p += 8
        if ln < 0:
            out.append("")
            continue
        out.append(blob[p:p + ln].decode("utf-8"))
        p += ln
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    data = open(sys.argv[1], "rb").read()
    for blob in objects(data):
        book = lines(blob)
        if book and book[0] == sys.argv[2]:
            sys.stdout.write("\n".join(book) + "\n")
            return
    sys.exit("no book starts with %r" % sys.argv[2])


if __name__ == "__main__":
    main()
