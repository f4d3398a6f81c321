"""Cell outlines as polygons: the outer boundary of each instance of a label image, traced along pixel edges.

Coordinates are pixel corners: pixel (row r, column c) covers x ∈ [c, c+1], y ∈ [r, r+1]. A polygon traced
along the edges between a cell's pixels and the rest encloses exactly the cell's pixel centres, so a viewer
that fills it by the usual rule (pixel centre inside) gets the cell's mask back — which a contour through
pixel centres (OpenCV's `findContours`) does not: it loses half a pixel all round. This is the outline
ImageJ's "Create Selection" makes. `instance_polygons` gives one ring per cell (its largest part's outer
boundary); `instance_outlines` gives all of a cell's rings — its parts and its holes.

All cells are traced at once with array operations (no loop over cells or edges): every boundary edge
points to the next one along its cell's boundary, and the loops of that mapping are found and put in order
by pointer jumping. Imports only numpy."""
from __future__ import annotations

import numpy as np

# Edge directions, traced with the cell on the right-hand side (y points down): +x, +y, −x, −y.
_DX = np.array([1, 0, -1, 0])
_DY = np.array([0, 1, 0, -1])


def instance_polygons(labels: np.ndarray, table: dict[str, np.ndarray] | None = None) -> dict[int, np.ndarray]:
    """The outline of every instance of an integer (H,W) label image.

    table: unused beyond its ids (accepted so callers holding an `instance_table` can pass it; the ids
    returned are those present in `labels` either way).
    Returns {id: float64 (K,2) vertices (x, y) in pixel-corner coordinates}, clockwise on screen (y down;
    counter-clockwise with y up), the first vertex not repeated, corners only (no collinear vertices)."""
    return {i: rings[0] for i, rings in instance_outlines(labels, every_part=False).items()}


def instance_outlines(labels: np.ndarray, every_part: bool = True) -> dict[int, list[np.ndarray]]:
    """Every boundary of every instance: {id: [ring, …]}, each a float64 (K,2) ring as `instance_polygons`
    gives. The outer boundaries of the cell's parts come first, largest first (clockwise on screen), then
    the boundaries of its holes (counter-clockwise). Filled by the even-odd rule (each ring toggles the
    pixel centres inside it) the rings give back exactly the cell's pixels, whatever its shape: parts apart
    or touching at a corner, holes, parts inside holes. every_part=False: the largest part's outer boundary
    alone (what `instance_polygons` returns)."""
    lab = np.pad(np.asarray(labels), 1)
    if lab.ndim != 2:
        raise ValueError(f"labels must be (H,W), got shape {np.shape(labels)}")
    cell, x, y, d = _boundary_edges(lab)
    if cell.size == 0:
        return {}
    code_ids, code = np.unique(cell, return_inverse=True)  # compact codes 0..n−1 in id order
    code = code.astype(np.int64)
    following = _next_edges(code, x, y, d, lab.shape[1] + 1, lab.shape[0] + 1)
    loop, rank = _loops(following)
    area = _loop_areas(loop, x, y, d)
    chosen = (loop == np.arange(loop.size)) if every_part else _largest_loops(loop, code, area)
    keep = chosen[loop]
    # rings in order: by cell, by decreasing signed area (parts before holes), then along each loop
    order = np.lexsort((rank[keep], loop[keep], -area[loop[keep]], code[keep]))
    e = np.flatnonzero(keep)[order]
    corner = d[e] != d[following[e]]  # the vertex where edge e ends is a corner when the next edge turns
    ends_x, ends_y = x[e] + _DX[d[e]], y[e] + _DY[d[e]]
    vx, vy, vloop, vcode = ends_x[corner] - 1.0, ends_y[corner] - 1.0, loop[e][corner], code[e][corner]
    split = np.flatnonzero(np.diff(vloop)) + 1
    out: dict[int, list[np.ndarray]] = {}
    for c, px, py in zip(vcode[np.r_[0, split]], np.split(vx, split), np.split(vy, split)):
        out.setdefault(int(code_ids[c]), []).append(np.stack([px, py], axis=1))
    return out


def mask_outline(mask: np.ndarray) -> np.ndarray:
    """The outer boundary of a boolean (h,w) mask's largest 4-connected part (see the module): float64
    (K,2) corner vertices (x, y); (0,2) for an empty mask."""
    return instance_polygons(np.asarray(mask, np.uint8)).get(1, np.zeros((0, 2), np.float64))


def _boundary_edges(lab: np.ndarray):
    """The directed edges between each labelled pixel of a padded (H,W) label image and a pixel of another
    label: (label, start x, start y, direction 0..3), traced with the labelled pixel on the right."""
    r, c = np.nonzero(lab)
    value = lab[r, c]
    cells, xs, ys, ds = [], [], [], []
    # top side (other label above) goes +x from corner (c, r); right side +y from (c+1, r);
    # bottom side −x from (c+1, r+1); left side −y from (c, r+1).
    for direction, (nr, nc), (sx, sy) in ((0, (r - 1, c), (0, 0)), (1, (r, c + 1), (1, 0)),
                                          (2, (r + 1, c), (1, 1)), (3, (r, c - 1), (0, 1))):
        sel = lab[nr, nc] != value
        cells.append(value[sel])
        xs.append(c[sel] + sx)
        ys.append(r[sel] + sy)
        ds.append(np.full(int(sel.sum()), direction, np.int64))
    return (np.concatenate(cells), np.concatenate(xs).astype(np.int64), np.concatenate(ys).astype(np.int64),
            np.concatenate(ds))


def _next_edges(code, x, y, d, vw: int, vh: int) -> np.ndarray:
    """For each edge, the index of the edge that follows it along its cell's boundary. Where two edges of
    the cell leave the vertex (parts touching at a corner), the right turn — towards the cell — is taken,
    which keeps such parts apart."""
    start = (code * vh + y) * vw + x
    end = (code * vh + y + _DY[d]) * vw + x + _DX[d]
    order = np.argsort(start, kind="stable")
    first = np.searchsorted(start[order], end)
    a = order[first]
    b = order[np.minimum(first + 1, order.size - 1)]
    two_ways = (first + 1 < order.size) & (start[b] == end)
    right_turn_b = ((d[b] - d - 1) % 4) < ((d[a] - d - 1) % 4)
    return np.where(two_ways & right_turn_b, b, a)


def _loops(following: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The loops of a permutation of edges: (loop id = the smallest edge index on the loop, position of each
    edge along its loop counted from that edge), both int64 (E,)."""
    n = following.size
    head = np.arange(n)
    jump = following.copy()
    while True:  # smallest index within 2^k steps, doubling k until nothing changes
        smaller = np.minimum(head, head[jump])
        jump = jump[jump]
        if np.array_equal(smaller, head):
            break
        head = smaller
    previous = np.empty(n, np.int64)
    previous[following] = np.arange(n)
    is_head = head == np.arange(n)
    previous[is_head] = np.flatnonzero(is_head)
    rank = (~is_head).astype(np.int64)
    while True:  # list ranking: distance back to the head
        after = rank + rank[previous]
        back = previous[previous]
        if np.array_equal(back, previous):
            break
        rank, previous = after, back
    return head, rank


def _loop_areas(loop, x, y, d) -> np.ndarray:
    """Signed area (shoelace, positive for outer boundaries, negative for holes) of each loop, indexed by
    its loop id (the smallest edge index on it): float64 (E,)."""
    cross = x * (y + _DY[d]) - (x + _DX[d]) * y
    return np.bincount(loop, weights=cross, minlength=loop.size) / 2


def _largest_loops(loop, code, area) -> np.ndarray:
    """A boolean mask over loop ids: the loop of largest signed area of each cell (its largest part's outer
    boundary)."""
    heads = np.flatnonzero(loop == np.arange(loop.size))
    best = heads[np.lexsort((-area[heads], code[heads]))]
    first_of_cell = np.r_[True, np.diff(code[best]) != 0]
    chosen = np.zeros(loop.size, bool)
    chosen[best[first_of_cell]] = True
    return chosen
