/**
 * World (patient, mm) ↔ image pixel coordinates for one frame, from the DICOM Image Plane module
 * (PS3.3 C.7.6.2): Image Position (Patient) is the centre of the first transmitted pixel, Image
 * Orientation (Patient) gives the row direction (x, increasing column) then the column direction
 * (y, increasing row), Pixel Spacing is [row spacing (y), column spacing (x)].
 *
 * Cornerstone's own `worldToImageCoords` pairs the row cosines with the row spacing, which is only
 * right for square pixels, so the viewer uses these functions (fed the rendered image's geometry). Image coordinates follow
 * docs/architecture.md: x = column, y = row, origin at the top-left corner, pixel centres at +0.5.
 */

const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];

/**
 * The frame geometry of what the viewport renders (`viewport.getImageData()`: origin, 3×3 direction
 * with the row then the column cosines, spacing [x, y, z]), so coordinates match the pixels shown
 * even where the loader filled in a default spacing or position.
 */
export function planeFromImageData({ origin, direction, spacing }) {
  return {
    origin: Array.from(origin || [0, 0, 0]),
    rowCosines: direction ? Array.from(direction).slice(0, 3) : [1, 0, 0],
    columnCosines: direction ? Array.from(direction).slice(3, 6) : [0, 1, 0],
    xSpacing: (spacing && spacing[0]) || 1,
    ySpacing: (spacing && spacing[1]) || 1,
  };
}

export function worldToImage(plane, world) {
  const d = [world[0] - plane.origin[0], world[1] - plane.origin[1], world[2] - plane.origin[2]];
  return [dot(d, plane.rowCosines) / plane.xSpacing + 0.5, dot(d, plane.columnCosines) / plane.ySpacing + 0.5];
}

export function imageToWorld(plane, [x, y]) {
  const u = (x - 0.5) * plane.xSpacing;
  const v = (y - 0.5) * plane.ySpacing;
  return [0, 1, 2].map((i) => plane.origin[i] + plane.rowCosines[i] * u + plane.columnCosines[i] * v);
}
