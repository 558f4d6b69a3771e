/**
 * The answer of one annotator, in the label shape of docs/architecture.md ("The label shape"), and the
 * schema the viewer is mounted with. Pure functions (no DOM, no Cornerstone) so they are easy to
 * reason about:
 *
 *   answer = {labels: [{name, present} | {name, uncertain: true}], rois: [{label, shape, points}],
 *             image: {rows, columns, frame}}
 *
 * Points are image pixels: x = column, y = row, origin at the top-left corner of the frame, so the
 * centre of pixel (c, r) is (c + 0.5, r + 0.5). `rectangle` and `ellipse` carry two opposite corners
 * of their box, `polygon` its vertices, `point` one point.
 */

/**
 * The ROI shapes and their point counts [min, max] (null: up to MAX_POINTS_PER_ROI): the shape
 * registry of labeling/contracts/shapes.py, which tests/unit/test_contracts.py checks this table
 * against, so Python and JavaScript cannot drift. A new shape goes there, here, and into its tool.
 */
export const SHAPE_POINTS = {
  rectangle: [2, 2],
  ellipse: [2, 2],
  polygon: [3, null],
  point: [1, 1],
};
export const MAX_POINTS_PER_ROI = 10000;
export const SHAPES = Object.keys(SHAPE_POINTS);

/** Colours for labels without their own `color` (distinct on a grey image, colour-blind aware). */
const PALETTE = ['#e6194b', '#3cb44b', '#ffe119', '#4363d8', '#f58231', '#42d4f4', '#f032e6',
  '#bfef45', '#fabed4', '#dcbeff', '#9a6324', '#fffac8'];

/**
 * Normalise the `schema` option (labeling/contracts/schema.py's `to_dict()`, or the looser
 * `{labels: [name | {name, description?, color?, shapes?}], instructions?, required?}`).
 *
 * `required` may be `{labels: true|false}` (schema.py: every label must be answered, or none) or a
 * list of label names that must be answered; absent means every label (schema.py's default).
 * Throws a TypeError naming what is wrong.
 */
export function normalizeSchema(schema) {
  if (!schema || !Array.isArray(schema.labels) || schema.labels.length === 0) {
    throw new TypeError('schema.labels must be a non-empty list of labels');
  }
  const seen = new Set();
  const labels = schema.labels.map((raw, index) => {
    const entry = typeof raw === 'string' ? { name: raw } : raw;
    if (!entry || typeof entry.name !== 'string' || !entry.name.trim()) {
      throw new TypeError(`schema.labels[${index}].name must be a non-empty string`);
    }
    const folded = entry.name.toLowerCase();
    if (seen.has(folded)) {
      throw new TypeError(`schema.labels[${index}].name: duplicate label ${JSON.stringify(entry.name)}`);
    }
    seen.add(folded);
    const shapes = Array.isArray(entry.shapes) && entry.shapes.length
      ? entry.shapes.filter((s) => SHAPES.includes(s)) : SHAPES.slice();
    return {
      name: entry.name,
      description: typeof entry.description === 'string' ? entry.description : '',
      color: typeof entry.color === 'string' && /^#[0-9a-fA-F]{3,8}$/.test(entry.color)
        ? entry.color : PALETTE[index % PALETTE.length],
      shapes,
    };
  });
  let required;
  const req = schema.required;
  if (req === undefined || req === null) {
    required = labels.map((l) => l.name);
  } else if (Array.isArray(req)) {
    required = req.filter((name) => labels.some((l) => l.name === name));
  } else if (typeof req === 'object') {
    required = req.labels === false ? [] : labels.map((l) => l.name);
  } else {
    required = req ? labels.map((l) => l.name) : [];
  }
  const taskType = typeof schema.task_type === 'string' ? schema.task_type : 'classification+roi';
  return {
    name: typeof schema.name === 'string' ? schema.name : '',
    labels,
    instructions: typeof schema.instructions === 'string' ? schema.instructions : '',
    required,
    classification: taskType !== 'roi',
    rois: taskType !== 'classification',
    uncertain: schema.uncertain === true, // a third choice per label (labeling/contracts/answer.py: no vote)
  };
}

const round = (value) => Math.round(value * 100) / 100;

/** Two opposite corners [[xmin, ymin], [xmax, ymax]] of the box around image points. */
export function boundingBox(points) {
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  return [[round(Math.min(...xs)), round(Math.min(...ys))], [round(Math.max(...xs)), round(Math.max(...ys))]];
}

/**
 * One ROI of the answer from a shape and its image points (as drawn by the tool). With `image`
 * ({rows, columns}) the points are clamped to it first: a handle dragged past the edge marks the
 * edge, and the label contract refuses points outside [0, columns] x [0, rows].
 */
export function roiFromImagePoints(label, shape, points, image) {
  if (image && image.rows > 0 && image.columns > 0) {
    const clamp = (v, hi) => Math.min(Math.max(v, 0), hi);
    points = points.map((p) => [clamp(p[0], image.columns), clamp(p[1], image.rows)]);
  }
  if (shape === 'rectangle' || shape === 'ellipse') {
    return { label, shape, points: boundingBox(points) };
  }
  if (shape === 'point') {
    return { label, shape, points: [[round(points[0][0]), round(points[0][1])]] };
  }
  // polygon: drop consecutive duplicates (freehand drawing repeats points) and a closing repeat.
  const out = [];
  for (const p of points) {
    const q = [round(p[0]), round(p[1])];
    const last = out[out.length - 1];
    if (!last || last[0] !== q[0] || last[1] !== q[1]) {
      out.push(q);
    }
  }
  if (out.length > 1 && out[0][0] === out[out.length - 1][0] && out[0][1] === out[out.length - 1][1]) {
    out.pop();
  }
  return { label, shape, points: out };
}

/**
 * The handle points (image coordinates) a Cornerstone tool needs to show an answer's ROI:
 * rectangle → 4 corners [tl, tr, bl, br]; ellipse → [bottom, top, left, right] of its box
 * (EllipticalROITool's order); polygon → its vertices; point → the point.
 */
export function toolPointsFromRoi(roi) {
  const pts = roi.points;
  if (roi.shape === 'rectangle' || roi.shape === 'ellipse') {
    const [[x0, y0], [x1, y1]] = boundingBox(pts);
    if (roi.shape === 'rectangle') {
      return [[x0, y0], [x1, y0], [x0, y1], [x1, y1]];
    }
    const cx = (x0 + x1) / 2;
    const cy = (y0 + y1) / 2;
    return [[cx, y1], [cx, y0], [x0, cy], [x1, cy]];
  }
  return pts.map((p) => [p[0], p[1]]);
}

/** Check an answer-shaped ROI read from initialAnswer/overlays; returns an error string or null. */
export function roiProblem(roi, schema) {
  if (!roi || typeof roi !== 'object') return 'not an object';
  if (!SHAPES.includes(roi.shape)) return `unknown shape ${JSON.stringify(roi.shape)}`;
  if (!Array.isArray(roi.points) || !roi.points.every((p) => Array.isArray(p) && p.length >= 2
      && p.every((v) => Number.isFinite(v)))) return 'points must be [[x, y], ...] numbers';
  const [low, high] = SHAPE_POINTS[roi.shape];
  if (roi.points.length < low) return `${roi.shape} needs at least ${low} points`;
  if (roi.points.length > (high ?? MAX_POINTS_PER_ROI)) return `${roi.shape} has more than ${high ?? MAX_POINTS_PER_ROI} points`;
  if (schema && !schema.labels.some((l) => l.name === roi.label)) {
    return `label ${JSON.stringify(roi.label)} is not in the schema`;
  }
  return null;
}

/**
 * What is missing before the answer may be submitted (empty list when it is complete):
 * every required label answered; every ROI's label present in the schema, allowed for its shape,
 * and not marked absent; the image loaded.
 */
export function validateAnswer(schema, labelState, rois, image) {
  const problems = [];
  if (!image || !image.rows || !image.columns) {
    problems.push('The image has not loaded; it cannot be labelled.');
  }
  if (schema.classification) {
    for (const name of schema.required) {
      if (labelState.get(name) === null || labelState.get(name) === undefined) {
        problems.push(`Answer "${name}": present or absent${schema.uncertain ? ' (or uncertain)' : ''}.`);
      }
    }
  }
  rois.forEach((roi, index) => {
    const label = schema.labels.find((l) => l.name === roi.label);
    if (!label) {
      problems.push(`Region ${index + 1} has no label from the list.`);
    } else if (!label.shapes.includes(roi.shape)) {
      problems.push(`Region ${index + 1}: "${roi.label}" may not be drawn as a ${roi.shape}.`);
    } else if (schema.classification && labelState.get(roi.label) === false) {
      problems.push(`Region ${index + 1} is labelled "${roi.label}", which is marked absent.`);
    }
  });
  return problems;
}
