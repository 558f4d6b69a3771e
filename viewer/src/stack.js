/**
 * The slices of a series or multi-frame task (issue 14): their image IDs, background prefetch, and
 * the navigation controls (slice indicator and slider, cine with a frame rate, keys). The viewer
 * (viewer.js) owns the Cornerstone stack viewport and the ROIs; this module only moves between
 * slices and loads them.
 *
 * Slice order is the manifest's (`manifest --level series`: ImagePositionPatient along the normal,
 * InstanceNumber as fallback); a multi-frame instance is one slice per frame, all with its URL.
 */
import { imageLoader, Enums as CoreEnums } from '@cornerstonejs/core';

import { el, setText } from './dom.js';

/** Parallel background downloads: the browser's HTTP/1.1 connections per host (6) less one for scrolling. */
export const PREFETCH_CONCURRENCY = 5;
export const CINE_FPS = { min: 1, max: 60, initial: 10 };
export const STACK_KEY_HELP = 'Slices: wheel, ←/→ or PgUp/PgDn (↑/↓ when no finding is listed) · '
  + 'Home/End first/last · C cine play/pause · click a region\'s slice to go there.';

/**
 * The wadouri image ID of 0-based `frame` of the DICOM file at `url` (the loader reads a 1-based
 * `frame=` at the end of the image ID, after ? or &; frame 0 of a single-frame file needs none).
 */
export function imageIdOf(url, frame) {
  const id = `wadouri:${new URL(url, document.baseURI).href}`;
  return frame > 0 ? `${id}${id.includes('?') ? '&' : '?'}frame=${frame + 1}` : id;
}

const isFrame = (v) => Number.isInteger(v) && v >= 0;

/**
 * The slices to show, from the mount options: `slices: [{url, instance, frame?}]` (a series or
 * multi-frame task) or `imageUrl` (one image; its frame from `initialAnswer.image.frame`).
 * Returns [{url, instance, frame, imageId}]; throws a TypeError naming the bad entry.
 */
export function normalizeSlices(options) {
  const prefix = 'mount(element, options): options.';
  if (options.slices !== undefined && options.imageUrl !== undefined) {
    throw new TypeError(`${prefix}imageUrl and options.slices: give one of them, not both`);
  }
  if (options.slices === undefined) {
    if (typeof options.imageUrl !== 'string' || !options.imageUrl) {
      throw new TypeError(`${prefix}imageUrl must be the URL of a DICOM file (or give options.slices)`);
    }
    const frame = options.initialAnswer?.image?.frame;
    const f = isFrame(frame) ? frame : 0;
    return [{ url: options.imageUrl, instance: null, frame: f, imageId: imageIdOf(options.imageUrl, f) }];
  }
  if (!Array.isArray(options.slices) || !options.slices.length) {
    throw new TypeError(`${prefix}slices must be a non-empty list of {url, instance, frame}`);
  }
  const seen = new Map();
  return options.slices.map((slice, i) => {
    const where = `${prefix}slices[${i}]`;
    if (!slice || typeof slice.url !== 'string' || !slice.url) throw new TypeError(`${where}.url must be a URL`);
    if (typeof slice.instance !== 'string' || !slice.instance) {
      throw new TypeError(`${where}.instance must be the Orthanc instance ID of the slice`);
    }
    const frame = slice.frame ?? 0;
    if (!isFrame(frame)) {
      throw new TypeError(`${where}.frame must be a 0-based frame number, got ${JSON.stringify(frame)}`);
    }
    const key = `${slice.instance}#${frame}`;
    if (seen.has(key)) {
      throw new TypeError(`${where}: instance ${slice.instance} frame ${frame} repeats slices[${seen.get(key)}]`);
    }
    seen.set(key, i);
    return { url: slice.url, instance: slice.instance, frame, imageId: imageIdOf(slice.url, frame) };
  });
}

/**
 * Loads every slice into Cornerstone's cache in the background, at most `concurrency` at a time,
 * nearest to the slice on screen first (`focus()` re-aims it as the reader scrolls). A slice the
 * viewport already loaded resolves at once from the cache, so `loaded` counts every slice.
 */
export class Prefetcher {
  constructor(imageIds, { concurrency = PREFETCH_CONCURRENCY, onProgress = () => {} } = {}) {
    this.imageIds = imageIds;
    this.concurrency = concurrency;
    this.onProgress = onProgress;
    this.state = imageIds.map(() => 'waiting'); // waiting | loading | loaded | failed
    this.errors = new Map();
    this.loaded = 0;
    this.inFlight = 0;
    this.center = 0;
    this.stopped = false;
  }

  get failed() { return this.errors.size; }

  start(center = 0) {
    this.center = center;
    this.pump();
  }

  focus(center) {
    this.center = center;
  }

  stop() { this.stopped = true; }

  /** The nearest waiting slice to the focus (ties: the one after it, the reading direction). */
  next() {
    const n = this.imageIds.length;
    for (let d = 0; d < n; d += 1) {
      for (const i of [this.center + d, this.center - d]) {
        if (i >= 0 && i < n && this.state[i] === 'waiting') return i;
      }
    }
    return -1;
  }

  pump() {
    while (!this.stopped && this.inFlight < this.concurrency) {
      const i = this.next();
      if (i < 0) return;
      this.state[i] = 'loading';
      this.inFlight += 1;
      imageLoader.loadAndCacheImage(this.imageIds[i], { requestType: CoreEnums.RequestType.Prefetch }).then(
        () => { this.state[i] = 'loaded'; this.loaded += 1; },
        (error) => {
          this.state[i] = 'failed';
          this.errors.set(i, error?.message || error?.error?.message || String(error || 'load failed'));
        },
      ).finally(() => {
        this.inFlight -= 1;
        if (this.stopped) return;
        this.onProgress(this);
        this.pump();
      });
    }
  }
}

/**
 * The navigation controls of a stack viewport: "12 / 64" (and the loaded count while prefetching),
 * a slider, cine play/pause with its frame rate. `go(i)` shows slice i (clamped); `onShown(i)` is
 * what the viewer calls when Cornerstone shows slice i (STACK_NEW_IMAGE), whatever moved it.
 */
export class StackNav {
  constructor(viewport, slices) {
    this.viewport = viewport;
    this.count = slices.length;
    this.index = 0;
    this.fps = CINE_FPS.initial;
    this.timer = null;
    this.busy = false;
    this.prefetcher = null;
    this.indicator = el('span', { class: 'da-slice', dataset: { daSlice: '' }, 'aria-live': 'polite' });
    this.loadedText = el('span', { class: 'da-status', dataset: { daLoaded: '' } });
    this.slider = el('input', { type: 'range', min: '1', max: String(this.count), value: '1', step: '1',
      title: 'Slice', 'aria-label': 'Slice', dataset: { daSlider: '' },
      oninput: () => this.go(Number(this.slider.value) - 1) });
    this.cineButton = el('button', { type: 'button', title: 'Cine play/pause (C)', 'aria-pressed': 'false',
      dataset: { daCine: '' }, onclick: () => this.toggleCine() }, 'Cine ▶');
    this.fpsInput = el('input', { type: 'number', min: String(CINE_FPS.min), max: String(CINE_FPS.max),
      value: String(this.fps), title: 'Cine frame rate (frames per second)', dataset: { daFps: '' },
      onchange: () => this.setFps(Number(this.fpsInput.value)) });
    this.bar = el('div', { class: 'da-group da-stack', role: 'group', 'aria-label': 'Slices' },
      this.indicator, this.slider, this.cineButton, this.fpsInput, ' fps ', this.loadedText);
    this.show();
  }

  startPrefetch() {
    this.prefetcher = new Prefetcher(this.viewport.getImageIds(), { onProgress: () => this.show() });
    this.prefetcher.start(this.index);
    this.show();
  }

  /** Show slice `index` (clamped to the stack); resolves when Cornerstone has it on screen. */
  async go(index) {
    const target = Math.max(0, Math.min(this.count - 1, Math.round(index)));
    if (target === this.viewport.getCurrentImageIdIndex()) return;
    this.prefetcher?.focus(target);
    // A slice that cannot be loaded is reported by the viewer (IMAGE_LOAD_ERROR), not thrown here.
    await this.viewport.setImageIdIndex(target).catch(() => {});
  }

  step(delta) { return this.go(this.index + delta); }

  onShown(index) {
    this.index = index;
    this.prefetcher?.focus(index);
    this.show();
  }

  show() {
    setText(this.indicator, `${this.index + 1} / ${this.count}`);
    this.slider.value = String(this.index + 1);
    const p = this.prefetcher;
    if (!p) return;
    const failed = p.failed ? ` · ${p.failed} failed` : '';
    const busy = p.loaded + p.failed < this.count;
    setText(this.loadedText, busy ? `loaded ${p.loaded} / ${this.count}${failed}` : failed.slice(3));
    this.bar.dataset.daLoadedCount = String(p.loaded);
  }

  setFps(fps) {
    this.fps = Number.isFinite(fps) ? Math.max(CINE_FPS.min, Math.min(CINE_FPS.max, fps)) : CINE_FPS.initial;
    this.fpsInput.value = String(this.fps);
    if (this.timer) { this.pause(); this.play(); }
  }

  /** Cine: the next slice every 1/fps s, looping; a slice still loading is waited for, not skipped. */
  play() {
    if (this.timer || this.count < 2) return;
    this.timer = setInterval(() => {
      if (this.busy) return;
      this.busy = true;
      this.go((this.index + 1) % this.count).finally(() => { this.busy = false; });
    }, 1000 / this.fps);
    this.cineButton.setAttribute('aria-pressed', 'true');
    setText(this.cineButton, 'Cine ❚❚');
  }

  pause() {
    clearInterval(this.timer);
    this.timer = null;
    this.cineButton.setAttribute('aria-pressed', 'false');
    setText(this.cineButton, 'Cine ▶');
  }

  toggleCine() { if (this.timer) this.pause(); else this.play(); }

  /** Handle a navigation key; true when it was one. `arrowsFree`: ↑/↓ do not choose findings. */
  key(key, arrowsFree) {
    const steps = { ArrowRight: 1, ArrowLeft: -1, PageDown: 1, PageUp: -1 };
    if (arrowsFree) Object.assign(steps, { ArrowDown: 1, ArrowUp: -1 });
    if (key in steps) this.step(steps[key]);
    else if (key === 'Home') this.go(0);
    else if (key === 'End') this.go(this.count - 1);
    else if (key === 'c' || key === 'C') this.toggleCine();
    else return false;
    return true;
  }

  state() {
    const p = this.prefetcher;
    return { index: this.index, count: this.count, loaded: p ? p.loaded : 1, failed: p ? p.failed : 0,
      playing: !!this.timer, fps: this.fps };
  }

  destroy() {
    this.pause();
    this.prefetcher?.stop();
  }
}
