"""Writes Zarr v3 hierarchies with zarr-python for `floe import zarr`.

    python tests/zarr_make.py OUT_DIR

OUT_DIR/good: a hierarchy floe imports: every dtype floe holds as
`/raw/<dtype>` (no compressor) or `/zstd/<dtype>` (zarr.codecs.ZstdCodec),
7 x 5 in chunks of 3 x 2 (edge chunks in both dimensions) with a fill
value away from 0 and columns 0:4 written (the last chunk column never);
`/edge/auto` (11 in chunks of 4, zarr-python's default compressors),
`/edge/dots` (3-d, chunk keys `c.i.j.k`) and `/edge/empty` (no chunk
written). OUT_DIR/expected holds each array's values as read back by
zarr-python (`.npy`) and `arrays.json` ({"/array/path": "file.npy"}).
OUT_DIR/bad: a hierarchy with one array compressed with blosc, which floe
must refuse naming the codec. tests/zarr_import.rs runs this when
FLOE_ZARR_PYTHON names a python with zarr-python 3.1.6 (.ci/run).
"""

import json
import os
import sys

import numpy as np
import zarr
from zarr.codecs import BloscCodec, ZstdCodec

DTYPES = [
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float32",
    "float64",
]


def fill_of(dtype):
    if dtype == "bool":
        return True
    if dtype.startswith("int"):
        return -3
    if dtype.startswith("uint"):
        return 9
    if dtype == "float32":
        return -1.5
    return float("nan")


def values(dtype, shape, salt):
    k = (np.arange(int(np.prod(shape))).reshape(shape) * 7 + salt) % 100
    if dtype == "bool":
        return k % 3 == 0
    if dtype.startswith("int"):
        return (k - 50).astype(dtype)
    if dtype.startswith("uint"):
        return (k + 1).astype(dtype)
    return (k * 0.25 - 10.0).astype(dtype)


def main(out):
    good = os.path.join(out, "good")
    expected = os.path.join(out, "expected")
    os.makedirs(expected)
    root = zarr.open_group(good, mode="w")
    arrays = {}
    for i, dtype in enumerate(DTYPES):
        group = "zstd" if i % 2 else "raw"
        compressors = [ZstdCodec(level=3)] if i % 2 else None
        a = root.create_array(
            f"{group}/{dtype}",
            shape=(7, 5),
            chunks=(3, 2),
            dtype=dtype,
            fill_value=fill_of(dtype),
            compressors=compressors,
        )
        a[0:7, 0:4] = values(dtype, (7, 4), i)
        arrays[f"/{group}/{dtype}"] = a
    auto = root.create_array("edge/auto", shape=(11,), chunks=(4,), dtype="uint16")
    auto[:] = values("uint16", (11,), 5)
    arrays["/edge/auto"] = auto
    dots = root.create_array(
        "edge/dots",
        shape=(3, 5, 4),
        chunks=(2, 2, 3),
        dtype="float32",
        fill_value=0.5,
        compressors=None,
        chunk_key_encoding={"name": "default", "separator": "."},
    )
    dots[1:3, 0:5, 0:4] = values("float32", (2, 5, 4), 8)
    arrays["/edge/dots"] = dots
    arrays["/edge/empty"] = root.create_array(
        "edge/empty", shape=(4, 4), chunks=(2, 2), dtype="int32", fill_value=5
    )
    index = {}
    for path, a in arrays.items():
        name = path.lstrip("/").replace("/", ".") + ".npy"
        np.save(os.path.join(expected, name), a[...])
        index[path] = name
    with open(os.path.join(expected, "arrays.json"), "w") as f:
        json.dump(index, f)

    bad = zarr.open_group(os.path.join(out, "bad"), mode="w")
    ok = bad.create_array("fine", shape=(4,), chunks=(2,), dtype="int8", compressors=None)
    ok[:] = 1
    blosc = bad.create_array(
        "data/packed", shape=(6,), chunks=(3,), dtype="int16", compressors=[BloscCodec()]
    )
    blosc[:] = np.arange(6, dtype="int16")
    print(f"wrote {len(index)} arrays to {good} and a blosc array to {out}/bad")


if __name__ == "__main__":
    main(sys.argv[1])
