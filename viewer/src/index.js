/**
 * dicom-annotate viewer bundle entry (ESM). Exports `mount` and, as a side effect of loading, sets
 * `window.DicomAnnotateViewer = {mount, version}` so a classic or inline module script in the GT
 * worker template or a portal page can use it (the mount API is documented at the top of viewer.js).
 */
import { mount } from './viewer.js';

/* global __DA_VERSION__ */
export const version = typeof __DA_VERSION__ === 'string' ? __DA_VERSION__ : 'dev';

export { mount };

if (typeof window !== 'undefined') {
  window.DicomAnnotateViewer = Object.freeze({ mount, version });
  window.dispatchEvent(new Event('dicom-annotate-viewer-ready'));
}
