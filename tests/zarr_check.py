"""Opens a Zarr v3 hierarchy written by `floe export zarr` with zarr-python
and compares every array with what `floe read` returned for it.

    python tests/zarr_check.py EXPORT_DIR EXPECTED_DIR

EXPECTED_DIR holds `arrays.json` ({"/array/path": "file.npy", ...}, every
array of the export) and those `.npy` files. Every array must open, have
the expected dtype and shape, and hold equal values (NaN equal to NaN);
the hierarchy must hold exactly those arrays. Exits 1 naming every
difference, 0 when all agree. tests/zarr_export.rs runs it in CI
(FLOE_ZARR_PYTHON, set by .ci/run: zarr 3.1.6, numcodecs 0.16.6).
"""

import json
import os
import sys

import numpy as np
import zarr


def main(export_dir, expected_dir):
    with open(os.path.join(expected_dir, "arrays.json")) as f:
        expected = json.load(f)
    root = zarr.open_group(export_dir, mode="r")
    problems = []
    found = {
        "/" + name
        for name, node in root.members(max_depth=None)
        if isinstance(node, zarr.Array)
    }
    if found != set(expected):
        problems.append(
            f"the hierarchy holds arrays {sorted(found)}, expected {sorted(expected)}"
        )
    for path, npy in sorted(expected.items()):
        want = np.load(os.path.join(expected_dir, npy))
        try:
            array = root[path.lstrip("/")]
            got = array[...]
        except Exception as e:  # report every array, not just the first
            problems.append(f"{path}: cannot read it: {e!r}")
            continue
        if got.dtype != want.dtype:
            problems.append(f"{path}: dtype {got.dtype}, expected {want.dtype}")
            continue
        if got.shape != want.shape:
            problems.append(f"{path}: shape {got.shape}, expected {want.shape}")
            continue
        equal_nan = want.dtype.kind == "f"
        if not np.array_equal(got, want, equal_nan=equal_nan):
            bad = np.argwhere(~((got == want) | (np.isnan(got) & np.isnan(want))
                                if equal_nan else got == want))
            first = tuple(int(i) for i in bad[0])
            problems.append(
                f"{path}: {len(bad)} elements differ, first at {first}: "
                f"{got[first]!r} != {want[first]!r}"
            )
            continue
        print(f"ok {path} {got.dtype} {got.shape} fill {array.fill_value!r}")
    for p in problems:
        print(f"MISMATCH {p}")
    if problems:
        return 1
    print(f"zarr {zarr.__version__}: {len(expected)} arrays equal to floe read")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
