/**
 * The annotation viewer: one DICOM Part-10 image, or the slices of a series / multi-frame instance,
 * in a Cornerstone3D stack viewport; the schema's labels as present/absent answers, and rectangle /
 * ellipse / polygon (freehand) / point ROIs, each with its own schema label. The mount API (one
 * home: here; docs/architecture.md lists it among the contracts), shared by the GT worker template
 * and the portal, in two forms:
 *
 *   mount(element, {imageUrl, schema, initialAnswer?, overlays?, readOnly?, onChange?, theme?, pixelSpacing?})
 *   mount(element, {slices: [{url, instance, frame?}, ...], schema, ...the same options})
 *
 * Image form: one image (its 0-based frame from `initialAnswer.image.frame`, default 0).
 * Series form (issue 14; a `manifest --level series` task): `slices` in the manifest line's order
 * (`instances`, slice 0 first), `url` the slice's DICOM file, `instance` its Orthanc instance ID,
 * `frame` the 0-based frame in it (default 0); a multi-frame instance is N entries with the same url
 * and instance and frames 0..N-1. Each instance+frame appears once; a bad entry is a TypeError naming
 * it. Then: every ROI of getAnswer() carries the `instance` and `frame` of the slice it was drawn on
 * (labeling/contracts/answer.py), and is shown on that slice only; ROIs of `initialAnswer` and
 * `overlays` go to the slice their instance/frame name (one naming no slice is listed as ignored);
 * `labels` are series-level; `image` is {rows, columns, frame: 0} of slice 0. The promise resolves
 * once slice 0 is on screen; the others load in the background (nearest first), counted in the
 * slice bar ("12 / 64", "loaded 40 / 64"). Navigation: wheel, ←/→ or PgUp/PgDn, ↑/↓ when no finding
 * list takes them, Home/End, a slider, cine (C) with a frame rate. validate() also reports regions
 * outside their slice and slices that failed to load.
 *
 * `theme: 'dark'` gives a reading-room palette; `pixelSpacing: [row mm, column mm]` (else the file's
 * PixelSpacing / ImagerPixelSpacing) shows each region's size in millimetres. Findings are one
 * present/absent choice per label (radio buttons); keys: ↑/↓ choose the finding, Y present, N absent
 * (then the next finding); A applies the automatic (1st–99th percentile) window, where MR starts.
 *     → Promise<{getAnswer(), validate(), destroy(), getViewState(), undo(), goToSlice(i),
 *                imageToClient([x, y]), pixelStats(), element}>
 *       (the last three for drivers and tests; the handle is also on root.daViewer; goToSlice(i)
 *       resolves when 0-based slice i is shown; getViewState().slice = {index, count, loaded, failed,
 *       playing, fps} for a series, else null)
 *
 * The promise resolves once the image is on screen (after the first IMAGE_RENDERED) and rejects
 * when it cannot be loaded or decoded (IMAGE_LOAD_ERROR); the root element's `data-da-status` is
 * then `rendered` or `error`, and `data-da-slice-index` the 0-based slice shown. Window/level acts on the
 * original (modality-LUT) pixel values.
 */
import {
  RenderingEngine, Enums as CoreEnums, eventTarget, metaData, utilities as csUtils,
} from '@cornerstonejs/core';
import {
  ToolGroupManager, Enums as ToolEnums, annotation as csAnnotation, utilities as toolUtils,
  WindowLevelTool, PanTool, ZoomTool, RectangleROITool, EllipticalROITool, PlanarFreehandROITool,
  ProbeTool, StackScrollTool,
} from '@cornerstonejs/tools';

import { setup } from './setup.js';
import { el, setText, ensureStyle } from './dom.js';
import { planeFromImageData, worldToImage, imageToWorld } from './geometry.js';
import {
  normalizeSchema, roiFromImagePoints, toolPointsFromRoi, roiProblem, validateAnswer,
} from './answer.js';
import { normalizeSlices, StackNav, STACK_KEY_HELP } from './stack.js';
import { windowPresets, pixelSummary } from './voi.js';
import { Findings } from './findings.js';

const { MouseBindings } = ToolEnums;
const ROI_TOOLS = {
  rectangle: RectangleROITool.toolName,
  ellipse: EllipticalROITool.toolName,
  polygon: PlanarFreehandROITool.toolName,
  point: ProbeTool.toolName,
};
const SHAPE_OF_TOOL = Object.fromEntries(Object.entries(ROI_TOOLS).map(([s, t]) => [t, s]));
const NAV_TOOLS = {
  windowlevel: WindowLevelTool.toolName, pan: PanTool.toolName, zoom: ZoomTool.toolName,
};
const TOOL_BUTTONS = [
  ['windowlevel', 'Window/level', 'W'], ['pan', 'Pan', 'P'], ['zoom', 'Zoom', 'Z'],
  ['rectangle', 'Rectangle', 'R'], ['ellipse', 'Ellipse', 'E'], ['polygon', 'Polygon', 'F'],
  ['point', 'Point', 'O'],
];
const ACTION_BUTTONS = [
  ['invert', 'Invert', 'I'], ['flipH', 'Flip ↔', 'H'], ['flipV', 'Flip ↕', 'V'], ['rotate', 'Rotate 90°', 'T'],
  ['reset', 'Reset', '0'], ['undo', 'Undo', 'Ctrl+Z'], ['delete', 'Delete region', 'Del'],
];
const OVERLAY_STYLES = ['#00e5ff', '#ff9f1c', '#b388ff', '#76ff03', '#ff4081'];
const KEY_HELP = 'Keys: ↑/↓ finding · Y present · N absent · ? uncertain (if offered) · W window/level · A auto window · P pan · Z zoom · '
  + 'R rectangle · E ellipse · F polygon · O point · 1–9 region label · I invert · H/V flip · T rotate · 0 reset · '
  + 'Ctrl+Z undo · Del delete selected region. Right button zooms, middle button pans.';

const LOAD_TIMEOUT_S = 180;
let mounts = 0;      // ids
let liveViewers = 0; // viewers on the page now (keyboard routing)
let lastPointerViewer = null;

class Viewer {
  constructor(element, options) {
    if (!(element instanceof HTMLElement)) {
      throw new TypeError('mount(element, options): element must be an HTML element');
    }
    if (!options || typeof options !== 'object') throw new TypeError('mount(element, options): options missing');
    this.slices = normalizeSlices(options);
    /** a series or multi-frame task: ROIs carry the instance and frame of their slice */
    this.isSeries = options.slices !== undefined;
    this.options = options;
    this.schema = normalizeSchema(options.schema);
    this.readOnly = !!options.readOnly;
    this.id = `da${++mounts}`;
    this.host = element;
    this.findings = new Findings(this.schema, { id: this.id, readOnly: this.readOnly,
      scope: this.isSeries ? 'series' : 'image' });
    /** own ROIs in drawing order: {uid, shape, label, slice, pending?} (pending: an answer-shaped ROI
     * of a slice not shown yet; its annotation is made when the slice first is, see whenShown) */
    this.rois = [];
    this.planes = new Map();    // slice index → its image plane (known once it has been shown)
    this.sizes = new Map();     // slice index → {rows, columns}
    this.onFirstShow = new Map(); // slice index → callbacks waiting for its plane
    this.overlayUids = new Set();
    this.undoStack = [];
    this.primary = 'windowlevel';
    this.roiLabel = this.schema.labels[0].name;
    this.image = null;
    this.listeners = [];
    this.destroyed = false;
  }

  // ------------------------------------------------------------------------------ DOM
  buildDom() {
    ensureStyle();
    const s = this.schema;
    this.root = el('div', { class: this.options.theme === 'dark' ? 'da-viewer da-dark' : 'da-viewer', tabindex: '0',
      dataset: { daStatus: 'loading' } });
    if (s.instructions) {
      this.root.appendChild(el('p', { class: 'da-instructions', dataset: { daInstructions: '' } }, s.instructions));
    }
    this.toolButtons = {};
    const toolGroup = el('div', { class: 'da-group', role: 'group', 'aria-label': 'Tools' });
    for (const [key, text, shortcut] of TOOL_BUTTONS) {
      const isRoi = key in ROI_TOOLS;
      if (isRoi && (!s.rois || this.readOnly)) continue;
      const button = el('button', {
        type: 'button', title: `${text} (${shortcut})`, 'aria-pressed': 'false', dataset: { daTool: key },
        onclick: () => this.setPrimary(key),
      }, text);
      this.toolButtons[key] = button;
      toolGroup.appendChild(button);
    }
    this.roiLabelSelect = el('select', { title: 'Label of the next region (1–9)', dataset: { daRoiLabel: '' },
      onchange: () => { this.roiLabel = this.roiLabelSelect.value; } });
    s.labels.forEach((label, i) => {
      this.roiLabelSelect.appendChild(el('option', { value: label.name }, `${i + 1}. ${label.name}`));
    });
    const labelGroup = el('label', { class: 'da-group' }, 'Region label ', this.roiLabelSelect);
    const actions = el('div', { class: 'da-group', role: 'group', 'aria-label': 'View' });
    this.actionButtons = {};
    for (const [key, text, shortcut] of ACTION_BUTTONS) {
      if (this.readOnly && (key === 'undo' || key === 'delete')) continue;
      const button = el('button', { type: 'button', title: `${text} (${shortcut})`, dataset: { daAction: key },
        onclick: () => this.action(key) }, text);
      if (key === 'invert' || key === 'flipH' || key === 'flipV') button.setAttribute('aria-pressed', 'false');
      this.actionButtons[key] = button;
      actions.appendChild(button);
    }
    this.presetSelect = el('select', { title: 'Window presets', dataset: { daPreset: '' },
      onchange: () => { this.applyPreset(this.presetSelect.value); this.presetSelect.value = ''; } },
    el('option', { value: '' }, 'W/L presets…'));
    this.voiText = el('span', { class: 'da-status', dataset: { daVoi: '' } });
    this.stackSlot = el('div', { class: 'da-toolbar' });
    const toolbar = el('div', { class: 'da-toolbar' }, toolGroup,
      (s.rois && !this.readOnly) ? labelGroup : null, actions, this.presetSelect, this.voiText);
    this.root.appendChild(toolbar);
    if (this.slices.length > 1) this.root.appendChild(this.stackSlot);

    this.viewportEl = el('div', { class: 'da-viewport', dataset: { daViewport: '' } });
    this.viewportEl.addEventListener('contextmenu', (e) => e.preventDefault());
    this.viewportEl.addEventListener('pointerdown', () => {
      lastPointerViewer = this;
      this.snapshotRois();
    }, true);
    const side = el('div', { class: 'da-side' });
    if (s.classification) {
      side.appendChild(this.findings.build((name, present) => this.answerLabel(name, present)));
    }
    this.roiList = el('ol', { class: 'da-rois', dataset: { daRois: '' } });
    if (s.rois) {
      side.appendChild(el('fieldset', {}, el('legend', {}, 'Regions'), this.roiList));
    }
    this.overlayLegend = el('div', { dataset: { daOverlays: '' } });
    side.appendChild(this.overlayLegend);
    this.statusEl = el('div', { class: 'da-status', role: 'status', dataset: { daMessage: '' } });
    side.appendChild(this.statusEl);
    if (!this.readOnly) side.appendChild(el('div', { class: 'da-keys' }, KEY_HELP));
    if (this.slices.length > 1) side.appendChild(el('div', { class: 'da-keys' }, STACK_KEY_HELP));
    this.root.appendChild(el('div', { class: 'da-main' }, this.viewportEl, side));
    this.host.appendChild(this.root);
    this.onPointerUp = () => { if (this.editSnapshot) setTimeout(() => this.recordEdits(), 0); };
    window.addEventListener('pointerup', this.onPointerUp, true);
    this.onKey = (e) => this.keydown(e);
    // Capture phase: Cornerstone's element listeners stop keydown propagation on the viewport.
    document.addEventListener('keydown', this.onKey, true);
  }

  // ---------------------------------------------------------------------- Cornerstone
  async start() {
    liveViewers += 1;
    this.buildDom();
    try {
      await setup();
    } catch (error) {
      this.fail(`The viewer could not start: ${error.message || error}`);
      throw error;
    }
    if (this.destroyed) throw new Error('viewer destroyed while starting');
    this.engine = new RenderingEngine(`${this.id}-engine`);
    this.viewportId = `${this.id}-viewport`;
    this.engine.enableElement({
      viewportId: this.viewportId, type: CoreEnums.ViewportType.STACK, element: this.viewportEl,
      defaultOptions: { background: [0, 0, 0] },
    });
    this.viewport = this.engine.getViewport(this.viewportId);
    this.setupTools();
    if (this.slices.length > 1) {
      this.stack = new StackNav(this.viewport, this.slices);
      this.stackSlot.appendChild(this.stack.bar);
    }

    // The first slice's metadata (modality, windows, spacing) serves the whole stack.
    this.imageId = this.slices[0].imageId;
    this.frame = this.isSeries ? 0 : this.slices[0].frame;
    const loaded = new Promise((resolve, reject) => {
      const onError = (evt) => {
        if (evt.detail?.imageId && evt.detail.imageId !== this.imageId) return;
        const error = evt.detail?.error;
        const reason = error?.message || error?.error?.message || (typeof error === 'string' ? error : '')
          || 'decode failed';
        reject(new Error(`The image could not be loaded or decoded: ${reason}`));
      };
      const onRendered = () => {
        if (this.viewport.getCurrentImageId?.() === this.imageId && this.viewport.getImageData?.()) {
          resolve();
        }
      };
      this.listen(eventTarget, CoreEnums.Events.IMAGE_LOAD_ERROR, onError);
      this.listen(this.viewportEl, CoreEnums.Events.IMAGE_RENDERED, onRendered);
      // A stalled download must end in a message, not a spinner forever.
      setTimeout(() => reject(new Error(`The image did not load within ${LOAD_TIMEOUT_S} s.`)), LOAD_TIMEOUT_S * 1000);
    });
    try {
      await Promise.race([this.viewport.setStack(this.slices.map((sl) => sl.imageId), 0)
        .then(() => this.viewport.render()),
        loaded.then(() => new Promise(() => {}))]);
      await loaded;
    } catch (error) {
      this.fail(error.message || String(error));
      throw error;
    }
    this.afterLoad();
    return this;
  }

  fail(message) {
    this.root.dataset.daStatus = 'error';
    this.root.dataset.daError = message;
    this.statusEl.className = 'da-status da-error';
    setText(this.statusEl, message);
  }

  listen(target, type, fn) {
    target.addEventListener(type, fn);
    this.listeners.push([target, type, fn]);
  }

  setupTools() {
    const groupId = `${this.id}-tools`;
    this.tools = ToolGroupManager.createToolGroup(groupId);
    const textLines = (data) => (data.label ? [data.label] : []);
    this.tools.addTool(WindowLevelTool.toolName);
    this.tools.addTool(PanTool.toolName);
    this.tools.addTool(ZoomTool.toolName);
    if (this.slices.length > 1) {
      this.tools.addTool(StackScrollTool.toolName);
    }
    for (const toolName of Object.values(ROI_TOOLS)) {
      this.tools.addTool(toolName, { getTextLines: textLines, calculateStats: false });
    }
    this.tools.addViewport(this.viewportId, this.engine.id);
    this.tools.setToolActive(WindowLevelTool.toolName, { bindings: [{ mouseButton: MouseBindings.Primary }] });
    this.tools.setToolActive(PanTool.toolName, { bindings: [{ mouseButton: MouseBindings.Auxiliary }] });
    this.tools.setToolActive(ZoomTool.toolName, { bindings: [{ mouseButton: MouseBindings.Secondary }] });
    if (this.slices.length > 1) {
      this.tools.setToolActive(StackScrollTool.toolName, { bindings: [{ mouseButton: MouseBindings.Wheel }] });
    }
    for (const toolName of Object.values(ROI_TOOLS)) {
      this.tools.setToolPassive(toolName);
    }
    this.setPressed();
  }

  afterLoad() {
    this.sliceShown(0);
    this.image = { ...this.sizes.get(0), frame: this.frame };
    const series = metaData.get('generalSeriesModule', this.imageId) || {};
    const voiModule = metaData.get('voiLutModule', this.imageId) || {};
    this.defaultVoi = { ...(this.viewport.getProperties().voiRange || {}) };
    // Presets are VOI ranges on the original (modality-LUT) values (voi.js).
    const { presets, autoPreset } = windowPresets(this.viewport.csImage, voiModule, series.modality);
    this.autoPreset = autoPreset;
    this.presets = presets;
    if (series.modality === 'MR' && this.autoPreset !== undefined) {
      // MR values have no fixed scale and files' windows are often unset or off: start automatic.
      this.defaultVoi = { ...presets[this.autoPreset][1] };
      this.viewport.setProperties({ voiRange: { ...this.defaultVoi } });
      this.viewport.render();
    }
    presets.forEach(([name, voi], i) => {
      const { windowCenter, windowWidth } = csUtils.windowLevel.toWindowLevel(voi.lower, voi.upper);
      this.presetSelect.appendChild(el('option', { value: String(i) },
        `${name} (C ${Math.round(windowCenter)} / W ${Math.round(windowWidth)})`));
    });
    this.listen(this.viewportEl, CoreEnums.Events.VOI_MODIFIED, () => this.showVoi());
    this.listen(eventTarget, ToolEnums.Events.ANNOTATION_COMPLETED, (evt) => this.completed(evt.detail.annotation));
    this.listen(eventTarget, ToolEnums.Events.ANNOTATION_MODIFIED, () => this.changed());
    if (this.stack) {
      this.listen(this.viewportEl, CoreEnums.Events.STACK_NEW_IMAGE, (evt) => this.sliceShown(evt.detail.imageIdIndex));
      // A slice that cannot be shown says so (the prefetch counts it too; validate() lists it).
      const indexOf = new Map(this.slices.map((sl, i) => [sl.imageId, i]));
      this.listen(eventTarget, CoreEnums.Events.IMAGE_LOAD_ERROR, (evt) => {
        const index = indexOf.get(evt.detail?.imageId);
        const error = evt.detail?.error;
        if (index > 0) {
          setText(this.statusEl, `Slice ${index + 1} could not be loaded: ${error?.message || error || 'load failed'}`);
        }
      });
      this.stack.startPrefetch();
    }
    this.loadInitial();
    this.showVoi();
    const plane = metaData.get('imagePlaneModule', this.imageId) || {};
    const given = this.options.pixelSpacing;
    const spacing = Array.isArray(given) && given.length === 2 && given.every((v) => Number.isFinite(v) && v > 0)
      ? given : [plane.rowPixelSpacing, plane.columnPixelSpacing];
    this.spacing = spacing.every((v) => Number.isFinite(v) && v > 0) ? { row: spacing[0], col: spacing[1] } : null;
    this.renderRoiList();
    this.root.dataset.daStatus = 'rendered';
    this.root.dataset.daRows = String(this.image.rows);
    this.root.dataset.daColumns = String(this.image.columns);
  }

  /** Slice `index` is on screen: its plane and size, the ROIs waiting for it, the indicator. */
  sliceShown(index) {
    const imageData = this.viewport.getImageData();
    this.plane = planeFromImageData(imageData);
    const dims = imageData.dimensions || [];
    const pixel = metaData.get('imagePixelModule', this.slices[index].imageId) || {};
    if (!this.planes.has(index)) {
      this.planes.set(index, this.plane);
      this.sizes.set(index, { rows: pixel.rows || dims[1], columns: pixel.columns || dims[0] });
      const waiting = this.onFirstShow.get(index) || [];
      this.onFirstShow.delete(index);
      for (const fn of waiting) fn();
      if (waiting.length) this.redraw();
    }
    this.stack?.onShown(index);
    this.root.dataset.daSliceIndex = String(index);
  }

  /** Run `fn` once slice `index` has been shown (at once when it has). */
  whenShown(index, fn) {
    if (this.planes.has(index)) { fn(); return; }
    if (!this.onFirstShow.has(index)) this.onFirstShow.set(index, []);
    this.onFirstShow.get(index).push(fn);
  }

  // --------------------------------------------------------------------- tools, view
  setPrimary(key) {
    if (this.readOnly && key in ROI_TOOLS) return;
    const toolName = NAV_TOOLS[key] || ROI_TOOLS[key];
    if (!toolName || !this.tools) return;
    const previous = NAV_TOOLS[this.primary] || ROI_TOOLS[this.primary];
    if (previous !== toolName) this.tools.setToolPassive(previous);
    this.tools.setToolActive(toolName, { bindings: [{ mouseButton: MouseBindings.Primary }] });
    this.primary = key;
    if (key in ROI_TOOLS) {
      const label = this.schema.labels.find((l) => l.name === this.roiLabel);
      if (label && !label.shapes.includes(key)) {
        const allowed = this.schema.labels.find((l) => l.shapes.includes(key));
        if (allowed) this.chooseRoiLabel(allowed.name);
      }
    }
    this.setPressed();
  }

  setPressed() {
    for (const [key, button] of Object.entries(this.toolButtons || {})) {
      button.setAttribute('aria-pressed', String(key === this.primary));
    }
    if (this.roiLabelSelect) {
      for (const option of this.roiLabelSelect.options) {
        const label = this.schema.labels.find((l) => l.name === option.value);
        option.disabled = this.primary in ROI_TOOLS && !label.shapes.includes(this.primary);
      }
    }
  }

  chooseRoiLabel(name) {
    this.roiLabel = name;
    if (this.roiLabelSelect) this.roiLabelSelect.value = name;
  }

  action(key) {
    if (!this.viewport || this.root.dataset.daStatus !== 'rendered') return;
    const vp = this.viewport;
    if (key === 'invert') {
      vp.setProperties({ invert: !vp.getProperties().invert });
    } else if (key === 'flipH') {
      vp.flip({ flipHorizontal: true });
    } else if (key === 'flipV') {
      vp.flip({ flipVertical: true });
    } else if (key === 'rotate') {
      vp.setViewPresentation({ rotation: (Math.round(vp.getViewPresentation().rotation || 0) + 90) % 360 });
    } else if (key === 'reset') {
      vp.resetCamera();
      vp.resetProperties();
      if (this.defaultVoi.lower !== undefined) vp.setProperties({ voiRange: { ...this.defaultVoi } });
    } else if (key === 'undo') {
      this.undo();
      return;
    } else if (key === 'delete') {
      this.deleteSelected();
      return;
    }
    vp.render();
    this.showVoi();
  }

  applyPreset(index) {
    const preset = this.presets?.[Number(index)];
    if (!preset || index === '') return;
    this.viewport.setProperties({ voiRange: { ...preset[1] } });
    this.viewport.render();
    this.showVoi();
  }

  getViewState() {
    if (!this.viewport || !this.image) return { status: this.root?.dataset.daStatus };
    const props = this.viewport.getProperties();
    const pres = this.viewport.getViewPresentation();
    return {
      status: this.root.dataset.daStatus,
      voiRange: props.voiRange ? { lower: props.voiRange.lower, upper: props.voiRange.upper } : null,
      invert: !!props.invert,
      flipHorizontal: !!pres.flipHorizontal,
      flipVertical: !!pres.flipVertical,
      rotation: Math.round(pres.rotation || 0) % 360,
      zoom: this.viewport.getZoom(),
      pan: this.viewport.getPan(),
      tool: this.primary,
      roiLabel: this.roiLabel,
      image: { ...this.image },
      undoDepth: this.undoStack.length,
      slice: this.stack ? this.stack.state() : null,
    };
  }

  /** Summary of the decoded (modality-LUT) pixel values shown: lets tests compare with pydicom. */
  pixelStats() {
    return pixelSummary(this.viewport?.csImage);
  }

  /** Page (client) coordinates of an image point: what a test driver needs to draw at image pixels. */
  imageToClient(point) {
    const [cx, cy] = this.viewport.worldToCanvas(imageToWorld(this.plane, point));
    const rect = this.viewport.canvas.getBoundingClientRect();
    return [rect.left + cx, rect.top + cy];
  }

  showVoi() {
    const range = this.viewport?.getProperties().voiRange;
    if (!range) return;
    const { windowWidth, windowCenter } = csUtils.windowLevel.toWindowLevel(range.lower, range.upper);
    setText(this.voiText, `C ${Math.round(windowCenter)} / W ${Math.round(windowWidth)}`);
    const inv = this.viewport.getProperties().invert;
    const pres = this.viewport.getViewPresentation();
    this.actionButtons.invert?.setAttribute('aria-pressed', String(!!inv));
    this.actionButtons.flipH?.setAttribute('aria-pressed', String(!!pres.flipHorizontal));
    this.actionButtons.flipV?.setAttribute('aria-pressed', String(!!pres.flipVertical));
  }

  // ------------------------------------------------------------------------- labels
  answerLabel(name, value, { record = true } = {}) {
    const previous = this.findings.state.get(name);
    this.findings.set(name, value);
    if (previous === value) return;
    if (record) this.undoStack.push({ type: 'label', name, previous });
    this.changed();
  }

  // --------------------------------------------------------------------------- ROIs
  camera() {
    const cam = this.viewport.getCamera();
    return { viewPlaneNormal: [...cam.viewPlaneNormal], viewUp: [...cam.viewUp] };
  }

  labelColor(name) {
    return this.schema.labels.find((l) => l.name === name)?.color || '#ffff00';
  }

  styleRoi(uid, color, dashed = false) {
    csAnnotation.config.style.setAnnotationStyles(uid, {
      color, colorHighlighted: color, colorSelected: '#ffffff', colorLocked: color,
      textBoxColor: color, textBoxColorHighlighted: color, textBoxColorSelected: '#ffffff', textBoxColorLocked: color,
      lineWidth: dashed ? '1' : '2', lineDash: dashed ? '6,4' : '',
    });
  }

  /** Remember every own ROI before a pointer gesture, so moving or reshaping one can be undone. */
  snapshotRois() {
    if (this.readOnly || !this.plane) return;
    this.editSnapshot = new Map();
    for (const roi of this.rois) {
      const annotation = csAnnotation.state.getAnnotation(roi.uid);
      if (annotation) this.editSnapshot.set(roi.uid, this.roiOf(roi, annotation));
    }
  }

  /** After a gesture: an undo step for each ROI whose points changed (new ROIs come via completed()). */
  recordEdits() {
    const before = this.editSnapshot;
    this.editSnapshot = null;
    if (!before) return;
    for (const roi of this.rois) {
      const previous = before.get(roi.uid);
      const annotation = csAnnotation.state.getAnnotation(roi.uid);
      if (!previous || !annotation) continue;
      if (JSON.stringify(previous.points) !== JSON.stringify(this.roiOf(roi, annotation).points)) {
        this.undoStack.push({ type: 'roi-edit', uid: roi.uid, roi: previous });
      }
    }
  }

  /** A Cornerstone annotation for an answer-shaped ROI on a shown slice (initialAnswer, overlays, undo). */
  makeAnnotation(roi, text, slice, uid = csUtils.uuidv4()) {
    const world = toolPointsFromRoi(roi).map((p) => imageToWorld(this.planes.get(slice), p));
    const { viewPlaneNormal, viewUp } = this.camera();
    const data = { handles: { points: world, activeHandleIndex: null, textBox: { hasMoved: false } },
      label: text, cachedStats: {} };
    if (roi.shape === 'polygon') {
      data.handles.points = [];
      data.contour = { polyline: world, closed: true };
    }
    return {
      annotationUID: uid,
      highlighted: false, invalidated: true, isLocked: false, isVisible: true, autoGenerated: false,
      metadata: { toolName: ROI_TOOLS[roi.shape], referencedImageId: this.slices[slice].imageId,
        FrameOfReferenceUID: this.viewport.getFrameOfReferenceUID(), viewPlaneNormal, viewUp },
      data,
    };
  }

  loadInitial() {
    const initial = this.options.initialAnswer;
    const problems = [];
    if (initial && typeof initial === 'object') {
      this.findings.load(initial.labels);
      (Array.isArray(initial.rois) ? initial.rois : []).forEach((roi, i) => {
        const problem = roiProblem(roi, this.schema);
        if (problem) {
          problems.push(`initial region ${i + 1}: ${problem}`);
          return;
        }
        const slice = this.sliceOf(roi);
        if (slice < 0) {
          problems.push(`initial region ${i + 1}: ${this.notASlice(roi)}`);
          return;
        }
        this.placeRoi(roi, roi.label, slice);
      });
    }
    (Array.isArray(this.options.overlays) ? this.options.overlays : []).forEach((overlay, k) => {
      const color = OVERLAY_STYLES[k % OVERLAY_STYLES.length];
      const name = typeof overlay?.name === 'string' ? overlay.name : `answer ${k + 1}`;
      const answer = overlay?.answer || {};
      const present = (answer.labels || []).filter((l) => l && l.present).map((l) => String(l.name));
      this.overlayLegend.appendChild(el('div', { dataset: { daOverlay: name } },
        el('span', { class: 'da-swatch', style: { background: color, display: 'inline-block' } }), ' ',
        el('strong', {}, name), `: ${present.length ? present.join(', ') : 'no finding'}`));
      (answer.rois || []).forEach((roi, i) => {
        const problem = roiProblem(roi, null) || (this.sliceOf(roi) < 0 ? this.notASlice(roi) : null);
        if (problem) {
          problems.push(`${name} region ${i + 1}: ${problem}`);
          return;
        }
        const slice = this.sliceOf(roi);
        this.whenShown(slice, () => {
          const annotation = this.makeAnnotation(roi, `${name}: ${roi.label}`, slice);
          annotation.isLocked = true;
          csAnnotation.state.addAnnotation(annotation, this.viewportEl);
          this.styleRoi(annotation.annotationUID, color, true);
          this.overlayUids.add(annotation.annotationUID);
        });
      });
    });
    if (problems.length) {
      setText(this.statusEl, `Ignored: ${problems.join('; ')}`);
    }
    this.renderRoiList();
    this.redraw();
  }

  redraw() {
    toolUtils.triggerAnnotationRenderForViewportIds([this.viewportId]);
  }

  /** The slice index an answer-shaped ROI refers to (its instance and frame); -1 when none is. */
  sliceOf(roi) {
    if (!this.isSeries) return 0;
    return this.slices.findIndex((sl) => sl.instance === roi.instance && sl.frame === (roi.frame ?? 0));
  }

  notASlice(roi) {
    const [instance, frame] = [JSON.stringify(roi.instance ?? null), JSON.stringify(roi.frame ?? 0)];
    return `instance ${instance} frame ${frame} is not a slice of this series`;
  }

  /**
   * Add an own ROI (answer-shaped) on `slice` at list position `index`: drawn at once when the slice
   * has been shown, else when it first is (its plane is known then); until then the answer carries
   * the given points.
   */
  placeRoi(roi, label, slice, { index = this.rois.length, uid = csUtils.uuidv4() } = {}) {
    const entry = { uid, shape: roi.shape, label, slice, pending: roi };
    this.rois.splice(index, 0, entry);
    this.whenShown(slice, () => {
      if (!this.rois.includes(entry)) return;
      const annotation = this.makeAnnotation(entry.pending, entry.label, slice, uid);
      if (this.readOnly) annotation.isLocked = true;
      csAnnotation.state.addAnnotation(annotation, this.viewportEl);
      this.styleRoi(uid, this.labelColor(entry.label));
      delete entry.pending;
    });
    return entry;
  }

  completed(annotation) {
    if (!annotation || lastPointerViewer !== this || this.readOnly) return;
    const shape = SHAPE_OF_TOOL[annotation.metadata?.toolName];
    if (!shape || this.overlayUids.has(annotation.annotationUID)
        || this.rois.some((r) => r.uid === annotation.annotationUID)) return;
    if (shape === 'polygon' && !annotation.data?.contour?.closed) {
      // An open freehand line is not a region: close it (the tool joins the ends on release).
      annotation.data.contour.closed = true;
    }
    let label = this.roiLabel;
    const entry = this.schema.labels.find((l) => l.name === label);
    if (!entry || !entry.shapes.includes(shape)) {
      label = this.schema.labels.find((l) => l.shapes.includes(shape))?.name || label;
    }
    annotation.data.label = label;
    this.styleRoi(annotation.annotationUID, this.labelColor(label));
    const drawnOn = this.slices.findIndex((sl) => sl.imageId === annotation.metadata.referencedImageId);
    const slice = drawnOn >= 0 ? drawnOn : (this.stack?.index ?? 0);
    this.rois.push({ uid: annotation.annotationUID, shape, label, slice });
    this.undoStack.push({ type: 'roi-add', uid: annotation.annotationUID });
    // Drawing a region of a finding answers that the finding is present.
    if (this.schema.classification && this.findings.state.get(label) === null) {
      this.answerLabel(label, true);
      this.undoStack.pop();
      this.undoStack[this.undoStack.length - 1].labelSet = label;
    }
    this.renderRoiList();
    this.redraw();
    this.changed();
  }

  setRoiLabel(uid, label, { record = true } = {}) {
    const roi = this.rois.find((r) => r.uid === uid);
    if (!roi || roi.label === label) return;
    if (record) this.undoStack.push({ type: 'roi-label', uid, previous: roi.label });
    roi.label = label;
    const annotation = csAnnotation.state.getAnnotation(uid);
    if (annotation) annotation.data.label = label;
    this.styleRoi(uid, this.labelColor(label));
    this.renderRoiList();
    this.redraw();
    this.changed();
  }

  removeRoi(uid, { record = true } = {}) {
    const index = this.rois.findIndex((r) => r.uid === uid);
    if (index < 0) return;
    const snapshot = this.answerRoi(this.rois[index]);
    csAnnotation.state.removeAnnotation(uid);
    const [removed] = this.rois.splice(index, 1);
    if (record && snapshot) {
      this.undoStack.push({ type: 'roi-remove', index, roi: snapshot, label: removed.label, slice: removed.slice });
    }
    this.renderRoiList();
    this.redraw();
    this.changed();
  }

  deleteSelected() {
    const selected = csAnnotation.selection.getAnnotationsSelected() || [];
    for (const uid of selected) {
      if (this.rois.some((r) => r.uid === uid)) this.removeRoi(uid);
    }
  }

  undo() {
    const step = this.undoStack.pop();
    if (!step) return false;
    if (step.type === 'roi-add') {
      this.removeRoi(step.uid, { record: false });
      if (step.labelSet) this.answerLabel(step.labelSet, null, { record: false });
    } else if (step.type === 'roi-remove') {
      this.placeRoi(step.roi, step.label, step.slice, { index: step.index });
      this.renderRoiList();
      this.redraw();
      this.changed();
    } else if (step.type === 'roi-edit') {
      const roi = this.rois.find((r) => r.uid === step.uid);
      if (roi) {
        csAnnotation.state.removeAnnotation(step.uid);
        csAnnotation.state.addAnnotation(
          this.makeAnnotation({ ...step.roi, label: roi.label }, roi.label, roi.slice, step.uid), this.viewportEl);
        this.styleRoi(step.uid, this.labelColor(roi.label));
        this.redraw();
        this.changed();
      }
    } else if (step.type === 'roi-label') {
      this.setRoiLabel(step.uid, step.previous, { record: false });
    } else if (step.type === 'label') {
      this.answerLabel(step.name, step.previous, { record: false });
    }
    return true;
  }

  renderRoiList() {
    if (!this.roiList) return;
    this.roiList.replaceChildren();
    this.rois.forEach((roi, i) => {
      const select = el('select', { disabled: this.readOnly, title: 'Label of this region',
        dataset: { daRoiIndex: String(i) } });
      for (const label of this.schema.labels) {
        select.appendChild(el('option', { value: label.name, disabled: !label.shapes.includes(roi.shape) }, label.name));
      }
      select.value = roi.label;
      select.addEventListener('change', () => this.setRoiLabel(roi.uid, select.value));
      const remove = this.readOnly ? null : el('button', { type: 'button', title: 'Delete this region',
        dataset: { daRoiDelete: String(i) }, onclick: () => this.removeRoi(roi.uid) }, '✕');
      const goto = this.stack ? el('button', { type: 'button', class: 'da-goto', title: 'Show this region\'s slice',
        dataset: { daRoiGoto: String(i) }, onclick: () => this.stack.go(roi.slice) }, `slice ${roi.slice + 1}`) : null;
      this.roiList.appendChild(el('li', { dataset: { daRoi: roi.shape } },
        el('span', { class: 'da-swatch', style: { background: this.labelColor(roi.label), display: 'inline-block' } }),
        ` ${roi.shape} `, select, ' ', goto, ' ', el('span', { class: 'da-size', dataset: { daSize: roi.uid } }), ' ',
        remove));
    });
    this.updateSizes();
  }

  /** Each region's size: width × height of its box in mm (pixels without a pixel spacing). */
  updateSizes() {
    if (!this.roiList || !this.plane) return;
    for (const roi of this.rois) {
      const span = this.roiList.querySelector(`[data-da-size="${roi.uid}"]`);
      const points = span && this.answerRoi(roi)?.points;
      if (!points) continue;
      if (roi.shape === 'point' || !points.length) { setText(span, ''); continue; }
      const xs = points.map((p) => p[0]); const ys = points.map((p) => p[1]);
      const w = Math.max(...xs) - Math.min(...xs); const h = Math.max(...ys) - Math.min(...ys);
      setText(span, this.spacing
        ? `${(w * this.spacing.col).toFixed(1)} × ${(h * this.spacing.row).toFixed(1)} mm`
        : `${Math.round(w)} × ${Math.round(h)} px`);
    }
  }

  // ------------------------------------------------------------------------- answer
  /** An own ROI's answer from its annotation, in the image coordinates of the slice it is on. */
  roiOf(roi, annotation) {
    const world = roi.shape === 'polygon' ? annotation.data.contour?.polyline || [] : annotation.data.handles.points;
    const image = world.map((w) => worldToImage(this.planes.get(roi.slice), w));
    return roiFromImagePoints(roi.label, roi.shape, image, this.sizes.get(roi.slice));
  }

  /** The answer-shaped ROI (with the instance and frame of its slice for a series); null if gone. */
  answerRoi(roi) {
    const annotation = csAnnotation.state.getAnnotation(roi.uid);
    let out = null;
    if (annotation) out = this.roiOf(roi, annotation);
    else if (roi.pending) out = { label: roi.label, shape: roi.shape, points: roi.pending.points.map(([x, y]) => [x, y]) };
    if (!out) return null;
    const { instance, frame } = this.slices[roi.slice];
    if (this.isSeries) Object.assign(out, { instance, frame });
    return out;
  }

  currentRois() {
    return this.rois.map((roi) => this.answerRoi(roi)).filter((answer) => answer && answer.points.length);
  }

  getAnswer() {
    return {
      labels: this.findings.verdicts(),
      rois: this.currentRois(),
      image: this.image ? { ...this.image } : { rows: 0, columns: 0, frame: 0 },
    };
  }

  validate() {
    const rois = this.currentRois();
    const problems = validateAnswer(this.schema, this.findings.state, rois, this.image);
    if (!this.isSeries) return problems;
    // Per slice: each region inside its slice (slices not shown yet: the first slice's size), and
    // every slice loaded (a reader must be able to see what the series-level answer covers).
    rois.forEach((roi, i) => {
      const size = this.sizes.get(this.sliceOf(roi)) || this.sizes.get(0);
      if (size && roi.points.some(([x, y]) => x < 0 || y < 0 || x > size.columns || y > size.rows)) {
        problems.push(`Region ${i + 1} lies outside its slice (${size.columns} × ${size.rows}).`);
      }
    });
    for (const [index, reason] of this.stack?.prefetcher?.errors || []) {
      problems.push(`Slice ${index + 1} could not be loaded (${reason}).`);
    }
    return problems;
  }

  changed() {
    this.updateSizes();
    if (typeof this.options.onChange === 'function') {
      try {
        this.options.onChange(this.getAnswer());
      } catch (error) {
        console.error('dicom-annotate viewer: onChange failed', error);
      }
    }
  }

  // -------------------------------------------------------------------------- keys
  keydown(e) {
    if (this.destroyed || this.root.dataset.daStatus !== 'rendered' || e.defaultPrevented) return;
    const target = e.target;
    const tag = target?.tagName;
    if (tag === 'TEXTAREA' || tag === 'SELECT' || target?.isContentEditable
        || (tag === 'INPUT' && !['checkbox', 'radio', 'button'].includes(target.type))) return;
    // With several viewers on a page, keys go to the one holding focus (or the only one).
    const active = document.activeElement;
    if (liveViewers > 1 && active && active !== document.body && !this.root.contains(active)) return;
    const key = e.key;
    if ((e.ctrlKey || e.metaKey) && key.toLowerCase() === 'z') {
      if (!this.readOnly) this.undo();
      e.preventDefault();
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const tools = { w: 'windowlevel', p: 'pan', z: 'zoom', r: 'rectangle', e: 'ellipse', f: 'polygon', o: 'point' };
    const actions = { i: 'invert', h: 'flipH', v: 'flipV', t: 'rotate', 0: 'reset', u: 'undo',
      Delete: 'delete', Backspace: 'delete' };
    const lower = key.length === 1 ? key.toLowerCase() : key;
    const findings = !this.readOnly && this.findings.inputs;
    if (findings && (lower === 'y' || lower === 'n' || (lower === '?' && this.schema.uncertain))) {
      this.answerLabel(this.findings.currentName, lower === '?' ? 'uncertain' : lower === 'y');
      this.findings.focus(this.findings.current + 1);
    } else if (findings && (key === 'ArrowDown' || key === 'ArrowUp')) {
      this.findings.focus(this.findings.current + (key === 'ArrowDown' ? 1 : -1));
    } else if (this.stack?.key(key, !findings)) {
      // a slice key (stack.js)
    } else if (lower === 'a') {
      this.applyPreset(String(this.autoPreset ?? ''));
    } else if (tools[lower]) {
      this.setPrimary(tools[lower]);
    } else if (actions[lower]) {
      this.action(actions[lower]);
    } else if (/^[1-9]$/.test(key) && this.schema.labels[Number(key) - 1]) {
      this.chooseRoiLabel(this.schema.labels[Number(key) - 1].name);
    } else {
      return;
    }
    e.preventDefault();
  }

  destroy({ keepDom = false } = {}) {
    if (this.destroyed) return;
    this.destroyed = true;
    liveViewers -= 1;
    this.stack?.destroy();
    document.removeEventListener('keydown', this.onKey, true);
    window.removeEventListener('pointerup', this.onPointerUp, true);
    for (const [target, type, fn] of this.listeners) target.removeEventListener(type, fn);
    for (const uid of [...this.rois.map((r) => r.uid), ...this.overlayUids]) {
      csAnnotation.state.removeAnnotation(uid);
    }
    if (this.tools) ToolGroupManager.destroyToolGroup(this.tools.id);
    if (this.engine) this.engine.destroy();
    if (!keepDom) this.root?.remove();
    if (lastPointerViewer === this) lastPointerViewer = null;
  }
}

/**
 * Mount a viewer into `element` (see the module docstring). Resolves to the handle once the image is
 * rendered; rejects with an Error whose message is shown in the viewer when it cannot be.
 */
export async function mount(element, options) {
  const viewer = new Viewer(element, options);
  try {
    await viewer.start();
  } catch (error) {
    viewer.destroy({ keepDom: true }); // the error message stays visible in the page
    throw error;
  }
  const handle = Object.freeze({
    getAnswer: () => viewer.getAnswer(),
    validate: () => viewer.validate(),
    destroy: () => viewer.destroy(),
    getViewState: () => viewer.getViewState(),
    undo: () => viewer.undo(),
    imageToClient: (point) => viewer.imageToClient(point),
    pixelStats: () => viewer.pixelStats(),
    goToSlice: (index) => (viewer.stack ? viewer.stack.go(index) : Promise.resolve()),
    element: viewer.root,
  });
  // Reachable from the DOM for drivers (tests/browser/viewer_driver.py) that did not mount it.
  Object.defineProperty(viewer.root, 'daViewer', { value: handle });
  return handle;
}
