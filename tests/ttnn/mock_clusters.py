"""Write tt-metal mock cluster descriptors: python3 mock_clusters.py OUT_DIR

tt-metal runs without hardware when TT_METAL_MOCK_CLUSTER_DESC_PATH names a cluster descriptor
(the YAML that UMD's topology discovery would otherwise produce). We write three Wormhole systems:

  wormhole_N150.yaml   1 chip  (one MMIO chip)
  wormhole_N300.yaml   2 chips (chip 0 has MMIO, chip 1 is reached over ethernet)
  wormhole_T3K.yaml    8 chips (4 x N300, a 2x4 ethernet mesh; chips 0-3 have MMIO)

The values (board ids, harvesting masks, ethernet channels) are those of real systems' descriptors;
tt-metal checks their consistency (e.g. harvesting leaves enough Tensix rows, links are symmetric),
not their provenance. Writing is atomic per file, so re-running is harmless.
"""

import os
import sys


def render(chips, links, mmio, harvest, board_type, boards):
    """chips: {id: (x, y)}, links: [(chip_a, chan_a, chip_b, chan_b)], mmio: {chip: pcie id},
    harvest: {chip: mask}, boards: [(board_id, [chips])]."""
    out = ["arch: {"] + [f"   {c}: Wormhole," for c in chips] + ["}", ""]
    out += ["chips: {"] + [f"   {c}: [{x},{y},0,0]," for c, (x, y) in chips.items()] + ["}", ""]
    out += ["ethernet_connections: ["]
    out += [f"   [{{chip: {a}, chan: {ca}}}, {{chip: {b}, chan: {cb}}}]," for a, ca, b, cb in links]
    out += ["]", ""]
    out += ["chips_with_mmio: ["] + [f"   {c}: {p}," for c, p in mmio.items()] + ["]", ""]
    out += ["harvesting: {"]
    out += [f"   {c}: {{noc_translation: true, harvest_mask: {m}}}," for c, m in harvest.items()]
    out += ["}", ""]
    out += ["boardtype: {"] + [f"   {c}: {board_type}," for c in chips] + ["}", ""]
    out += ["boards: ["]
    out += [
        f"   [ {{board_id: {b}}}, {{board_type: {board_type}}}, {{chips: [{', '.join(map(str, cs))}]}} ],"
        for b, cs in boards
    ]
    out += ["]", ""]
    return "\n".join(out)


N150 = render(
    chips={0: (0, 0)},
    links=[],
    mmio={0: 0},
    harvest={0: 32},
    board_type="n150",
    boards=[(72059269369839682, [0])],
)

N300 = render(
    chips={0: (0, 0), 1: (1, 0)},
    links=[(0, 8, 1, 0), (0, 9, 1, 1)],
    mmio={0: 0},
    harvest={0: 65, 1: 5},
    board_type="n300",
    boards=[(72058994491072686, [0, 1])],
)

# T3K: four N300 boards; (4,0) (5,1) (6,2) (7,3) are the board pairs, 0-3 the MMIO halves.
T3K = render(
    chips={0: (1, 0), 1: (1, 1), 2: (2, 0), 3: (2, 1), 4: (0, 0), 5: (0, 1), 6: (3, 0), 7: (3, 1)},
    links=[
        (0, 6, 2, 6), (0, 7, 2, 7), (0, 8, 4, 0), (0, 9, 4, 1), (0, 14, 1, 14), (0, 15, 1, 15),
        (1, 0, 3, 0), (1, 1, 3, 1), (1, 8, 5, 0), (1, 9, 5, 1), (2, 8, 6, 0), (2, 9, 6, 1),
        (2, 14, 3, 14), (2, 15, 3, 15), (3, 8, 7, 0), (3, 9, 7, 1), (4, 6, 5, 6), (4, 7, 5, 7),
        (6, 6, 7, 6), (6, 7, 7, 7),
    ],
    mmio={0: 0, 1: 1, 2: 3, 3: 2},
    harvest={0: 544, 1: 513, 2: 640, 3: 513, 4: 576, 5: 513, 6: 513, 7: 528},
    board_type="n300",
    boards=[
        (72058994491928619, [4, 0]),
        (72058994491928729, [5, 1]),
        (72058994491928743, [6, 2]),
        (72058994491928746, [7, 3]),
    ],
)


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    for name, text in (("N150", N150), ("N300", N300), ("T3K", T3K)):
        path = os.path.join(out_dir, f"wormhole_{name}.yaml")
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
