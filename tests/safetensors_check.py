#!/usr/bin/env python3
"""Independent safetensors reader/writer used to check genmod's checkpoints from outside C.

Written from the format description only (8-byte little-endian header length, JSON header,
raw little-endian data), with the standard library (json, struct) so it runs on any Python 3;
numpy is used for an extra cross-check when it is importable.

usage:
  safetensors_check.py verify FILE      check a file written by `td --st-write FILE`
  safetensors_check.py write FILE       write a file for `td --st-read FILE`
  safetensors_check.py roundtrip TD     both directions with the test binary TD (exit 0 = pass)
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

DTYPE_SIZE = {"F32": 4}


def read(path):
    """Returns (tensors: name -> (shape, list of floats), metadata dict); raises ValueError."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError("file shorter than 8 bytes")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise ValueError("header length %d exceeds file" % n)
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    meta = header.pop("__metadata__", {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise ValueError("metadata values must be strings")
    spans, tensors = [], {}
    for name, info in header.items():
        if set(info) != {"dtype", "shape", "data_offsets"}:
            raise ValueError("%s: fields %s" % (name, sorted(info)))
        if info["dtype"] not in DTYPE_SIZE:
            raise ValueError("%s: dtype %s" % (name, info["dtype"]))
        begin, end = info["data_offsets"]
        count = 1
        for d in info["shape"]:
            count *= d
        if end - begin != count * DTYPE_SIZE[info["dtype"]] or end > len(data):
            raise ValueError("%s: bad data_offsets %s" % (name, info["data_offsets"]))
        spans.append((begin, end, name))
        values = list(struct.unpack("<%df" % count, data[begin:end]))
        tensors[name] = (list(info["shape"]), values)
    at = 0
    for begin, end, name in sorted(spans):
        if begin != at:
            raise ValueError("%s: gap or overlap at %d" % (name, begin))
        at = end
    if at != len(data):
        raise ValueError("data section has %d unused bytes" % (len(data) - at))
    return tensors, meta, n


def write(path, tensors, meta):
    """tensors: list of (name, shape, values) in file order; header deliberately not padded."""
    header, blobs, at = {}, [], 0
    if meta:
        header["__metadata__"] = meta
    for name, shape, values in tensors:
        blob = struct.pack("<%df" % len(values), *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [at, at + len(blob)]}
        blobs.append(blob)
        at += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


# The model both sides agree on (see interop_model in tests/test_data.c); values exact in float32.
def expected():
    w = [i * 0.5 - 1.0 for i in range(12)]
    b = [0.25 * i for i in range(4)]
    c = [-float(i) for i in range(8)]
    return [("layer.weight", [3, 4], w), ("layer.bias", [4], b), ("conv.w", [2, 1, 2, 2], c)]


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def verify(path):
    tensors, meta, n = read(path)
    assert n % 8 == 0, "header length %d not a multiple of 8" % n
    offset = 0
    for name, shape, values in expected():
        assert tensors[name] == (shape, values), "%s differs: %s" % (name, tensors[name])
        m = [float(offset + i) for i in range(len(values))]  # C side: o.m[i] = i, o.v[i] = 2i
        assert tensors["optim.m." + name] == (shape, m), "optim.m.%s differs" % name
        assert tensors["optim.v." + name] == (shape, [2 * x for x in m]), "optim.v.%s differs" % name
        offset += len(values)
    assert len(tensors) == 9, sorted(tensors)
    assert meta["model"] == "vae" and meta["hidden"] == "16", meta
    assert meta["optim.kind"] == "adamw" and meta["optim.step"] == "1234", meta
    assert f32(float(meta["optim.lr"])) == f32(3e-4), meta["optim.lr"]
    try:
        import numpy as np
        with open(path, "rb") as f:
            raw = f.read()
        hdr = json.loads(raw[8:8 + n])
        b, e = hdr["layer.weight"]["data_offsets"]
        arr = np.frombuffer(raw[8 + n + b:8 + n + e], dtype="<f4").reshape(3, 4)
        assert (arr == np.arange(12, dtype=np.float32).reshape(3, 4) * 0.5 - 1).all()
        extra = " (numpy cross-check ok)"
    except ImportError:
        extra = ""
    try:  # the PyTorch user's view: every tensor as a torch tensor with the same values
        import torch
        loaded = {k: torch.tensor(v, dtype=torch.float32).reshape(shape) for k, (shape, v) in tensors.items()}
        w = loaded["layer.weight"]
        assert torch.equal(w, torch.arange(12, dtype=torch.float32).reshape(3, 4) * 0.5 - 1), w
        extra += " (torch tensors ok)"
    except ImportError:
        pass
    print("python read %s: %d tensors, values and metadata match%s" % (path, len(tensors), extra))


def write_for_c(path):
    # reverse order, unpadded header, a "format" key like torch writers add
    write(path, list(reversed(expected())), {"format": "pt", "model": "vae"})


def roundtrip(td):
    with tempfile.TemporaryDirectory() as d:
        a, b = os.path.join(d, "c_wrote.safetensors"), os.path.join(d, "py_wrote.safetensors")
        subprocess.run([td, "--st-write", a], check=True)
        verify(a)
        write_for_c(b)
        subprocess.run([td, "--st-read", b], check=True)
    print("safetensors interop: 2 passed, 0 failed")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("verify", "write", "roundtrip"):
        sys.exit(__doc__)
    {"verify": verify, "write": write_for_c, "roundtrip": roundtrip}[sys.argv[1]](sys.argv[2])
