/**
 * One-time Cornerstone3D set-up shared by every mounted viewer: core, tools and the DICOM image
 * loader (which registers the `wadouri:` scheme and its metadata providers itself).
 *
 * The decode worker. The loader starts it with `new Worker(new URL(..., import.meta.url))`, which a
 * browser refuses when the bundle comes from another origin (the GT worker page loads it from the
 * stack's CloudFront asset location). So the viewer registers the worker itself, before the loader
 * would: it fetches `decodeImageFrameWorker.js` from beside this bundle, checks it against the
 * SHA-384 that the build wrote into this bundle (`__DA_WORKER_SRI__`, so the page's SRI on viewer.js
 * covers the worker too), and starts it from a same-origin blob: URL. The worker was built with
 * `import.meta.url` replaced by `globalThis.__DA_WORKER_BASE__`, set first thing in the blob, so its
 * relative URLs still resolve against the asset location. The codec `.wasm` files are found through
 * `wasmBasePath` (the bundle's own directory); without it JPEG 2000 fails as an IMAGE_LOAD_ERROR.
 */
import { init as coreInit, getWebWorkerManager } from '@cornerstonejs/core';
import {
  init as toolsInit, addTool, WindowLevelTool, PanTool, ZoomTool, RectangleROITool, EllipticalROITool,
  PlanarFreehandROITool, ProbeTool, StackScrollTool,
} from '@cornerstonejs/tools';
import { init as loaderInit } from '@cornerstonejs/dicom-image-loader';

/* global __DA_WORKER_SRI__ */
const WORKER_SRI = typeof __DA_WORKER_SRI__ === 'string' ? __DA_WORKER_SRI__ : '';

export const ASSET_BASE = new URL('./', import.meta.url).href;

let ready = null;

async function workerSource() {
  const url = new URL('decodeImageFrameWorker.js', ASSET_BASE).href;
  const init = { mode: 'cors', credentials: 'omit' };
  if (WORKER_SRI) init.integrity = WORKER_SRI;
  const response = await fetch(url, init);
  if (!response.ok) {
    throw new Error(`cannot load the decode worker ${url}: HTTP ${response.status}`);
  }
  const text = await response.text();
  const prefix = `globalThis.__DA_WORKER_BASE__ = ${JSON.stringify(url)};\n`;
  return URL.createObjectURL(new Blob([prefix, text], { type: 'text/javascript' }));
}

function maxWorkers() {
  const cores = (typeof navigator !== 'undefined' && navigator.hardwareConcurrency) || 2;
  return Math.max(1, Math.min(4, Math.floor(cores / 2)));
}

/** Initialise Cornerstone once; later calls return the same promise. */
export function setup() {
  if (!ready) {
    ready = (async () => {
      const blobUrl = await workerSource();
      await coreInit();
      toolsInit();
      const workers = maxWorkers();
      // Registered before loaderInit(): the loader then keeps this registration (it does not overwrite).
      getWebWorkerManager().registerWorker('dicomImageLoader',
        () => new Worker(blobUrl, { type: 'module', name: 'dicom-annotate-decode' }),
        { maxWorkerInstances: workers });
      loaderInit({ maxWebWorkers: workers, wasmBasePath: ASSET_BASE });
      for (const Tool of [WindowLevelTool, PanTool, ZoomTool, RectangleROITool, EllipticalROITool,
        PlanarFreehandROITool, ProbeTool, StackScrollTool]) {
        addTool(Tool);
      }
    })();
    ready.catch(() => { ready = null; });
  }
  return ready;
}
