/**
 * The annotation viewer: one DICOM Part-10 image in a Cornerstone3D stack viewport, the schema's
 * labels as image-level present/absent answers, and rectangle / ellipse / polygon (freehand) /
 * point ROIs, each with its own schema label. The mount API (one home: here; docs/architecture.md
 * lists it among the contracts), shared by the GT worker template and the portal:
 *
 *   mount(element, {imageUrl, schema, initialAnswer?, overlays?, readOnly?, onChange?, theme?, pixelSpacing?})
 *
 * `theme: 'dark'` gives a reading-room palette; `pixelSpacing: [row mm, column mm]` (else the file's
 * PixelSpacing / ImagerPixelSpacing) shows each region's size in millimetres. Findings are one
 * present/absent choice per label (radio buttons); keys: ↑/↓ choose the finding, Y present, N absent
 * (then the next finding); A applies the automatic (1st–99th percentile) window.
 *     → Promise<{getAnswer(), validate(), destroy(), getViewState(), undo(), imageToClient([x, y]),
 *                pixelStats(), element}>   (the last four for drivers and tests; also on root.daViewer)
 *
 * The promise resolves once the image is on screen (after the first IMAGE_RENDERED) and rejects
 * when it cannot be loaded or decoded (IMAGE_LOAD_ERROR); the root element's `data-da-status` is
 * then `rendered` or `error`. Window/level acts on the original (modality-LUT) pixel values.
 */
import {
  RenderingEngine, Enums as CoreEnums, eventTarget, metaData, utilities as csUtils,
} from '@cornerstonejs/core';
import {
  ToolGroupManager, Enums as ToolEnums, annotation as csAnnotation, utilities as toolUtils,
  WindowLevelTool, PanTool, ZoomTool, RectangleROITool, EllipticalROITool, PlanarFreehandROITool,
  ProbeTool,
} from '@cornerstonejs/tools';

import { setup } from './setup.js';
import { el, setText, ensureStyle } from './dom.js';
import { planeFromImageData, worldToImage, imageToWorld } from './geometry.js';
import {
  normalizeSchema, roiFromImagePoints, toolPointsFromRoi, roiProblem, validateAnswer,
} from './answer.js';

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
/** Projection radiography: no fixed windows fit, the automatic percentile window does. */
const PROJECTION = new Set(['DX', 'CR', 'MG', 'RG', 'PX', 'RF', 'XA']);
const AUTO_PERCENTILES = [[1, 99], [5, 95]];

const LOAD_TIMEOUT_S = 180;
let mounts = 0;      // ids
let liveViewers = 0; // viewers on the page now (keyboard routing)
let lastPointerViewer = null;

/** Window presets for a modality: [name, center, width] (CT: Hounsfield units). */
function presetsFor(modality) {
  if (PROJECTION.has(modality)) return [];  // the automatic windows below serve DX/CR
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

class Viewer {
  constructor(element, options) {
    if (!(element instanceof HTMLElement)) {
      throw new TypeError('mount(element, options): element must be an HTML element');
    }
    if (!options || typeof options.imageUrl !== 'string' || !options.imageUrl) {
      throw new TypeError('mount(element, options): options.imageUrl must be the URL of a DICOM file');
    }
    this.options = options;
    this.schema = normalizeSchema(options.schema);
    this.readOnly = !!options.readOnly;
    this.id = `da${++mounts}`;
    this.host = element;
    /** label name → true (present) | false (absent) | 'uncertain' (schema.uncertain) | null (not answered) */
    this.labelState = new Map(this.schema.labels.map((l) => [l.name, null]));
    this.confidence = new Map();
    /** own ROIs in drawing order: {uid, shape, label} */
    this.rois = [];
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
    const toolbar = el('div', { class: 'da-toolbar' }, toolGroup,
      (s.rois && !this.readOnly) ? labelGroup : null, actions, this.presetSelect, this.voiText);
    this.root.appendChild(toolbar);

    this.viewportEl = el('div', { class: 'da-viewport', dataset: { daViewport: '' } });
    this.viewportEl.addEventListener('contextmenu', (e) => e.preventDefault());
    this.viewportEl.addEventListener('pointerdown', () => {
      lastPointerViewer = this;
      this.snapshotRois();
    }, true);
    const side = el('div', { class: 'da-side' });
    if (s.classification) {
      side.appendChild(this.buildLabels());
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
    this.root.appendChild(el('div', { class: 'da-main' }, this.viewportEl, side));
    this.host.appendChild(this.root);
    this.onPointerUp = () => { if (this.editSnapshot) setTimeout(() => this.recordEdits(), 0); };
    window.addEventListener('pointerup', this.onPointerUp, true);
    this.onKey = (e) => this.keydown(e);
    // Capture phase: Cornerstone's element listeners stop keydown propagation on the viewport.
    document.addEventListener('keydown', this.onKey, true);
  }

  buildLabels() {
    this.labelInputs = new Map();
    const box = el('fieldset', { dataset: { daLabels: '' } }, el('legend', {}, 'Findings in this image'));
    this.currentLabel = 0;
    this.schema.labels.forEach((label, index) => {
      // One choice per label: a radio group (present | absent), answered by click or Y/N.
      const group = `${this.id}-label-${index}`;
      const present = el('input', { type: 'radio', name: group, disabled: this.readOnly,
        dataset: { daLabelIndex: String(index), daValue: 'present' } });
      const absent = el('input', { type: 'radio', name: group, disabled: this.readOnly,
        dataset: { daLabelIndex: String(index), daValue: 'absent' } });
      present.addEventListener('change', () => { this.focusLabel(index); this.answerLabel(label.name, true); });
      absent.addEventListener('change', () => { this.focusLabel(index); this.answerLabel(label.name, false); });
      const uncertain = this.schema.uncertain ? el('input', { type: 'radio', name: group, disabled: this.readOnly,
        dataset: { daLabelIndex: String(index), daValue: 'uncertain' } }) : null;
      uncertain?.addEventListener('change', () => { this.focusLabel(index); this.answerLabel(label.name, 'uncertain'); });
      const conf = el('span', { class: 'da-conf' });
      const required = this.schema.required.includes(label.name);
      box.appendChild(el('div', { class: 'da-label-row', dataset: { daLabel: label.name } },
        el('span', { class: 'da-swatch', style: { background: label.color } }),
        el('span', { class: 'da-label-name' }, label.name, required ? ' *' : ''),
        label.description ? el('span', { class: 'da-label-desc' }, label.description) : null,
        el('span', { class: 'da-answer' }, el('label', {}, present, ' present'), el('label', {}, absent, ' absent'),
          uncertain ? el('label', {}, uncertain, ' uncertain') : null, conf)));
      this.labelInputs.set(label.name, { present, absent, uncertain, conf });
    });
    this.focusLabel(0);
    return box;
  }

  /** The finding Y/N answer (highlighted row). */
  focusLabel(index) {
    const count = this.schema.labels.length;
    this.currentLabel = ((index % count) + count) % count;
    this.schema.labels.forEach((label, i) => {
      const row = this.labelInputs?.get(label.name)?.present.closest('.da-label-row');
      row?.classList.toggle('da-current', i === this.currentLabel);
    });
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

    this.imageId = `wadouri:${new URL(this.options.imageUrl, document.baseURI).href}`;
    const frame = Number.isInteger(this.options.initialAnswer?.image?.frame)
      ? this.options.initialAnswer.image.frame : 0;
    // The loader reads a 1-based `frame=` at the end of a wadouri image ID (after ? or &).
    if (frame > 0) this.imageId += `${this.imageId.includes('?') ? '&' : '?'}frame=${frame + 1}`;
    this.frame = frame;
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
      await Promise.race([this.viewport.setStack([this.imageId], 0).then(() => this.viewport.render()),
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
    for (const toolName of Object.values(ROI_TOOLS)) {
      this.tools.addTool(toolName, { getTextLines: textLines, calculateStats: false });
    }
    this.tools.addViewport(this.viewportId, this.engine.id);
    this.tools.setToolActive(WindowLevelTool.toolName, { bindings: [{ mouseButton: MouseBindings.Primary }] });
    this.tools.setToolActive(PanTool.toolName, { bindings: [{ mouseButton: MouseBindings.Auxiliary }] });
    this.tools.setToolActive(ZoomTool.toolName, { bindings: [{ mouseButton: MouseBindings.Secondary }] });
    for (const toolName of Object.values(ROI_TOOLS)) {
      this.tools.setToolPassive(toolName);
    }
    this.setPressed();
  }

  afterLoad() {
    const imageData = this.viewport.getImageData();
    this.plane = planeFromImageData(imageData);
    const pixel = metaData.get('imagePixelModule', this.imageId) || {};
    const dims = imageData.dimensions || [];
    this.image = { rows: pixel.rows || dims[1], columns: pixel.columns || dims[0], frame: this.frame };
    const series = metaData.get('generalSeriesModule', this.imageId) || {};
    const voiModule = metaData.get('voiLutModule', this.imageId) || {};
    this.defaultVoi = { ...(this.viewport.getProperties().voiRange || {}) };
    // Presets are VOI ranges on the original (modality-LUT) values: the file's windows (PS3.3
    // C.11.2, linear function), the full range of the decoded pixels, then modality presets.
    const range = (center, width) => csUtils.windowLevel.toLowHighRange(width, center);
    const presets = [];
    const centers = asList(voiModule.windowCenter);
    const widths = asList(voiModule.windowWidth);
    centers.forEach((c, i) => {
      if (Number.isFinite(+c) && Number.isFinite(+widths[i]) && +widths[i] >= 1) {
        presets.push([`File window ${i + 1}`, range(+c, +widths[i])]);
      }
    });
    const stats = this.pixelStats();
    if (stats && !stats.color && stats.max > stats.min) {
      // Automatic windows: the 1st–99th (and a tighter 5th–95th) percentile of the decoded values,
      // robust to collimation borders and burned-in markers that stretch the full range.
      const cuts = this.percentiles(AUTO_PERCENTILES.flat());
      AUTO_PERCENTILES.forEach(([lo, hi], i) => {
        const lower = cuts[2 * i]; const upper = cuts[2 * i + 1];
        if (upper > lower) {
          if (this.autoPreset === undefined) this.autoPreset = presets.length;
          presets.push([`Auto ${lo}–${hi} %`, { lower, upper }]);
        }
      });
      presets.push(['Full range', { lower: stats.min, upper: stats.max }]);
    }
    for (const [name, c, w] of presetsFor(series.modality)) presets.push([name, range(c, w)]);
    this.presets = presets;
    presets.forEach(([name, voi], i) => {
      const { windowCenter, windowWidth } = csUtils.windowLevel.toWindowLevel(voi.lower, voi.upper);
      this.presetSelect.appendChild(el('option', { value: String(i) },
        `${name} (C ${Math.round(windowCenter)} / W ${Math.round(windowWidth)})`));
    });
    this.listen(this.viewportEl, CoreEnums.Events.VOI_MODIFIED, () => this.showVoi());
    this.listen(eventTarget, ToolEnums.Events.ANNOTATION_COMPLETED, (evt) => this.completed(evt.detail.annotation));
    this.listen(eventTarget, ToolEnums.Events.ANNOTATION_MODIFIED, () => this.changed());
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
    };
  }

  /** Summary of the decoded (modality-LUT) pixel values shown: lets tests compare with pydicom. */
  pixelStats() {
    const image = this.viewport?.csImage;
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
  percentiles(ps) {
    const data = this.viewport?.csImage?.getPixelData?.();
    if (!data || !data.length) return ps.map(() => NaN);
    const step = Math.max(1, Math.floor(data.length / 262144));
    const sample = new Float64Array(Math.ceil(data.length / step));
    for (let i = 0, j = 0; i < data.length; i += step, j += 1) sample[j] = data[i];
    sample.sort();
    return ps.map((p) => sample[Math.min(sample.length - 1, Math.max(0, Math.round((p / 100) * (sample.length - 1))))]);
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
    const previous = this.labelState.get(name);
    if (previous === value) {
      this.syncLabel(name);
      return;
    }
    this.labelState.set(name, value);
    if (record) this.undoStack.push({ type: 'label', name, previous });
    this.syncLabel(name);
    this.changed();
  }

  syncLabel(name) {
    const inputs = this.labelInputs?.get(name);
    if (!inputs) return;
    const value = this.labelState.get(name);
    inputs.present.checked = value === true;
    inputs.absent.checked = value === false;
    if (inputs.uncertain) inputs.uncertain.checked = value === 'uncertain';
    const conf = this.confidence.get(name);
    setText(inputs.conf, conf === undefined ? '' : `(pre-label ${Math.round(conf * 100)}%)`);
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

  /** A Cornerstone annotation for an answer-shaped ROI (initialAnswer, overlays, undo of a delete). */
  makeAnnotation(roi, text, uid = csUtils.uuidv4()) {
    const world = toolPointsFromRoi(roi).map((p) => imageToWorld(this.plane, p));
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
      metadata: { toolName: ROI_TOOLS[roi.shape], referencedImageId: this.imageId,
        FrameOfReferenceUID: this.viewport.getFrameOfReferenceUID(), viewPlaneNormal, viewUp },
      data,
    };
  }

  loadInitial() {
    const initial = this.options.initialAnswer;
    const problems = [];
    if (initial && typeof initial === 'object') {
      for (const entry of Array.isArray(initial.labels) ? initial.labels : []) {
        if (entry && this.labelState.has(entry.name) && this.schema.uncertain && entry.uncertain === true) {
          this.labelState.set(entry.name, 'uncertain');
        } else if (entry && this.labelState.has(entry.name) && typeof entry.present === 'boolean') {
          this.labelState.set(entry.name, entry.present);
          if (Number.isFinite(entry.confidence)) this.confidence.set(entry.name, entry.confidence);
        }
      }
      (Array.isArray(initial.rois) ? initial.rois : []).forEach((roi, i) => {
        const problem = roiProblem(roi, this.schema);
        if (problem) {
          problems.push(`initial region ${i + 1}: ${problem}`);
          return;
        }
        const annotation = this.makeAnnotation(roi, roi.label);
        if (this.readOnly) annotation.isLocked = true;
        csAnnotation.state.addAnnotation(annotation, this.viewportEl);
        this.styleRoi(annotation.annotationUID, this.labelColor(roi.label));
        this.rois.push({ uid: annotation.annotationUID, shape: roi.shape, label: roi.label });
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
        const problem = roiProblem(roi, null);
        if (problem) {
          problems.push(`${name} region ${i + 1}: ${problem}`);
          return;
        }
        const annotation = this.makeAnnotation(roi, `${name}: ${roi.label}`);
        annotation.isLocked = true;
        csAnnotation.state.addAnnotation(annotation, this.viewportEl);
        this.styleRoi(annotation.annotationUID, color, true);
        this.overlayUids.add(annotation.annotationUID);
      });
    });
    for (const name of this.labelState.keys()) this.syncLabel(name);
    if (problems.length) {
      setText(this.statusEl, `Ignored: ${problems.join('; ')}`);
    }
    this.renderRoiList();
    this.redraw();
  }

  redraw() {
    toolUtils.triggerAnnotationRenderForViewportIds([this.viewportId]);
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
    this.rois.push({ uid: annotation.annotationUID, shape, label });
    this.undoStack.push({ type: 'roi-add', uid: annotation.annotationUID });
    // Drawing a region of a finding answers that the finding is present.
    if (this.schema.classification && this.labelState.get(label) === null) {
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
    const annotation = csAnnotation.state.getAnnotation(uid);
    const snapshot = annotation ? this.roiOf(this.rois[index], annotation) : null;
    csAnnotation.state.removeAnnotation(uid);
    const [removed] = this.rois.splice(index, 1);
    if (record && snapshot) this.undoStack.push({ type: 'roi-remove', index, roi: snapshot, label: removed.label });
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
      const annotation = this.makeAnnotation(step.roi, step.label);
      csAnnotation.state.addAnnotation(annotation, this.viewportEl);
      this.styleRoi(annotation.annotationUID, this.labelColor(step.label));
      this.rois.splice(step.index, 0, { uid: annotation.annotationUID, shape: step.roi.shape, label: step.label });
      this.renderRoiList();
      this.redraw();
      this.changed();
    } else if (step.type === 'roi-edit') {
      const roi = this.rois.find((r) => r.uid === step.uid);
      if (roi) {
        csAnnotation.state.removeAnnotation(step.uid);
        csAnnotation.state.addAnnotation(this.makeAnnotation({ ...step.roi, label: roi.label }, roi.label, step.uid),
          this.viewportEl);
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
      this.roiList.appendChild(el('li', { dataset: { daRoi: roi.shape } },
        el('span', { class: 'da-swatch', style: { background: this.labelColor(roi.label), display: 'inline-block' } }),
        ` ${roi.shape} `, select, ' ', el('span', { class: 'da-size', dataset: { daSize: roi.uid } }), ' ', remove));
    });
    this.updateSizes();
  }

  /** Each region's size: width × height of its box in mm (pixels without a pixel spacing). */
  updateSizes() {
    if (!this.roiList || !this.plane) return;
    for (const roi of this.rois) {
      const span = this.roiList.querySelector(`[data-da-size="${roi.uid}"]`);
      const annotation = csAnnotation.state.getAnnotation(roi.uid);
      if (!span || !annotation) continue;
      const points = this.roiOf(roi, annotation).points;
      if (roi.shape === 'point' || !points.length) { setText(span, ''); continue; }
      const xs = points.map((p) => p[0]); const ys = points.map((p) => p[1]);
      const w = Math.max(...xs) - Math.min(...xs); const h = Math.max(...ys) - Math.min(...ys);
      setText(span, this.spacing
        ? `${(w * this.spacing.col).toFixed(1)} × ${(h * this.spacing.row).toFixed(1)} mm`
        : `${Math.round(w)} × ${Math.round(h)} px`);
    }
  }

  // ------------------------------------------------------------------------- answer
  roiOf(roi, annotation) {
    const world = roi.shape === 'polygon' ? annotation.data.contour?.polyline || [] : annotation.data.handles.points;
    const image = world.map((w) => worldToImage(this.plane, w));
    return roiFromImagePoints(roi.label, roi.shape, image, this.image);
  }

  currentRois() {
    const out = [];
    for (const roi of this.rois) {
      const annotation = csAnnotation.state.getAnnotation(roi.uid);
      if (!annotation) continue;
      const answer = this.roiOf(roi, annotation);
      if (answer.points.length) out.push(answer);
    }
    return out;
  }

  getAnswer() {
    return {
      labels: this.schema.labels.map((l) => (this.labelState.get(l.name) === 'uncertain'
        ? { name: l.name, uncertain: true } : { name: l.name, present: this.labelState.get(l.name) === true })),
      rois: this.currentRois(),
      image: this.image ? { ...this.image } : { rows: 0, columns: 0, frame: 0 },
    };
  }

  validate() {
    return validateAnswer(this.schema, this.labelState, this.currentRois(), this.image);
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
    const findings = !this.readOnly && this.labelInputs;
    if (findings && (lower === 'y' || lower === 'n' || (lower === '?' && this.schema.uncertain))) {
      this.answerLabel(this.schema.labels[this.currentLabel].name, lower === '?' ? 'uncertain' : lower === 'y');
      this.focusLabel(this.currentLabel + 1);
    } else if (findings && (key === 'ArrowDown' || key === 'ArrowUp')) {
      this.focusLabel(this.currentLabel + (key === 'ArrowDown' ? 1 : -1));
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
    element: viewer.root,
  });
  // Reachable from the DOM for drivers (tests/browser/viewer_driver.py) that did not mount it.
  Object.defineProperty(viewer.root, 'daViewer', { value: handle });
  return handle;
}
