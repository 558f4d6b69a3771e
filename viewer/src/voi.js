/**
 * Window presets (VOI ranges) for the image on screen: the file's windows (PS3.3 C.11.2, linear
 * function), automatic percentile windows and the full range of the decoded pixels, then the
 * modality's fixed windows (CT: Hounsfield units). All act on the original (modality-LUT) values.
 * Pure functions over a Cornerstone image (`getPixelData()`, `color`, `rows`, `columns`).
 */
import { utilities as csUtils } from '@cornerstonejs/core';

/** Projection radiography: no fixed windows fit, the automatic percentile window does. */
const PROJECTION = new Set(['DX', 'CR', 'MG', 'RG', 'PX', 'RF', 'XA']);
const AUTO_PERCENTILES = [[1, 99], [5, 95]];

/** Fixed window presets for a modality: [name, center, width] (CT: Hounsfield units). */
export function presetsFor(modality) {
  if (PROJECTION.has(modality)) return [];  // the automatic windows serve DX/CR
  if (modality === 'CT') {
    return [['Lung', -600, 1500], ['Mediastinum', 40, 400], ['Bone', 400, 1800], ['Brain', 40, 80],
      ['Abdomen', 40, 350]];
  }
  return [];
}

function asList(value) {
  if (value === undefined || value === null || value === '') return [];
  return Array.isArray(value) ? value : [value];
}

/** Summary of the decoded (modality-LUT) pixel values of `image`: lets tests compare with pydicom. */
export function pixelSummary(image) {
  const data = image?.getPixelData?.();
  if (!data) return null;
  let min = Infinity; let max = -Infinity; let sum = 0;
  for (let i = 0; i < data.length; i += 1) {
    const v = data[i];
    if (v < min) min = v;
    if (v > max) max = v;
    sum += v;
  }
  return { count: data.length, min, max, mean: sum / data.length, color: !!image.color,
    rows: image.rows, columns: image.columns };
}

/** Values at the given percentiles (0–100) of the decoded pixels (a strided sample of ≤ 262,144). */
export function percentiles(image, ps) {
  const data = image?.getPixelData?.();
  if (!data || !data.length) return ps.map(() => NaN);
  const step = Math.max(1, Math.floor(data.length / 262144));
  const sample = new Float64Array(Math.ceil(data.length / step));
  for (let i = 0, j = 0; i < data.length; i += step, j += 1) sample[j] = data[i];
  sample.sort();
  return ps.map((p) => sample[Math.min(sample.length - 1, Math.max(0, Math.round((p / 100) * (sample.length - 1))))]);
}

/**
 * The presets for `image`: {presets: [[name, {lower, upper}]], autoPreset: index of the first
 * automatic window (undefined for colour or flat images)}. `voiModule` is the image's voiLutModule.
 */
export function windowPresets(image, voiModule, modality) {
  const range = (center, width) => csUtils.windowLevel.toLowHighRange(width, center);
  const presets = [];
  let autoPreset;
  const centers = asList(voiModule.windowCenter);
  const widths = asList(voiModule.windowWidth);
  centers.forEach((c, i) => {
    if (Number.isFinite(+c) && Number.isFinite(+widths[i]) && +widths[i] >= 1) {
      presets.push([`File window ${i + 1}`, range(+c, +widths[i])]);
    }
  });
  const stats = pixelSummary(image);
  if (stats && !stats.color && stats.max > stats.min) {
    // Automatic windows: the 1st–99th (and a tighter 5th–95th) percentile of the decoded values,
    // robust to collimation borders and burned-in markers that stretch the full range.
    const cuts = percentiles(image, AUTO_PERCENTILES.flat());
    AUTO_PERCENTILES.forEach(([lo, hi], i) => {
      const lower = cuts[2 * i]; const upper = cuts[2 * i + 1];
      if (upper > lower) {
        if (autoPreset === undefined) autoPreset = presets.length;
        presets.push([`Auto ${lo}–${hi} %`, { lower, upper }]);
      }
    });
    presets.push(['Full range', { lower: stats.min, upper: stats.max }]);
  }
  for (const [name, c, w] of presetsFor(modality)) presets.push([name, range(c, w)]);
  return { presets, autoPreset };
}
