/**
 * DOM helpers. Every piece of text from the schema, the task or an answer goes in through
 * `textContent` / `createTextNode` / attribute values — never through innerHTML — so a label named
 * `<img src=x onerror=alert(1)>` is shown as those characters (docs/architecture.md, security floor).
 */

/** `el('button', {class: 'x', dataset: {a: '1'}, onclick}, 'text', child)` */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'dataset') {
      Object.assign(node.dataset, value);
    } else if (key === 'style' && typeof value === 'object') {
      Object.assign(node.style, value);
    } else if (key.startsWith('on') && typeof value === 'function') {
      node.addEventListener(key.slice(2), value);
    } else if (key === 'class') {
      node.className = value;
    } else if (value === true) {
      node.setAttribute(key, '');
    } else {
      node.setAttribute(key, String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
  }
  return node;
}

/** Replace the children of `node` with text (no markup interpretation). */
export function setText(node, text) {
  node.textContent = text;
}

const CSS = `
.da-viewer{font:14px/1.35 system-ui,sans-serif;color:#1b1f24;display:flex;flex-direction:column;gap:6px;outline:none}
.da-viewer .da-instructions{white-space:pre-wrap;background:#f3f6f9;border-left:4px solid #4363d8;padding:6px 10px;margin:0}
.da-viewer .da-toolbar{display:flex;flex-wrap:wrap;gap:4px;align-items:center}
.da-viewer .da-toolbar .da-group{display:flex;gap:2px;margin-right:8px;align-items:center}
.da-viewer button{font:inherit;padding:3px 8px;border:1px solid #8a94a0;background:#fff;border-radius:3px;cursor:pointer}
.da-viewer button[aria-pressed=true]{background:#1b1f24;color:#fff}
.da-viewer button:disabled{opacity:.45;cursor:default}
.da-viewer .da-main{display:flex;gap:8px;align-items:stretch;min-height:420px}
.da-viewer .da-viewport{flex:1 1 auto;min-width:300px;height:min(72vh,900px);min-height:400px;background:#000;position:relative}
.da-viewer .da-side{flex:0 0 280px;display:flex;flex-direction:column;gap:8px;overflow:auto;max-height:min(72vh,900px)}
.da-viewer fieldset{border:1px solid #c5ccd3;margin:0;padding:6px 8px}
.da-viewer .da-label-row{display:grid;grid-template-columns:14px 1fr;column-gap:6px;padding:3px 0;border-bottom:1px solid #eef0f2}
.da-viewer .da-swatch{width:12px;height:12px;border-radius:2px;margin-top:3px}
.da-viewer .da-label-name{font-weight:600;overflow-wrap:anywhere}
.da-viewer .da-label-desc{grid-column:2;color:#59636e;font-size:12px;overflow-wrap:anywhere}
.da-viewer .da-answer{grid-column:2;display:flex;gap:10px}
.da-viewer .da-answer label{cursor:pointer}
.da-viewer .da-conf{color:#59636e;font-size:12px}
.da-viewer ol.da-rois{margin:0;padding-left:22px}
.da-viewer ol.da-rois li{margin:2px 0}
.da-viewer .da-status{color:#59636e;font-size:12px;min-height:1.2em}
.da-viewer .da-error{color:#b00020;font-weight:600}
.da-viewer .da-keys{color:#59636e;font-size:12px}
.da-viewer .da-label-row.da-current{outline:2px solid #4363d8;outline-offset:1px}
.da-viewer .da-size{color:#59636e;font-size:12px}
.da-viewer .da-toolbar .da-stack{gap:6px}
.da-viewer .da-slice{font-variant-numeric:tabular-nums;min-width:5.5em;font-weight:600}
.da-viewer .da-stack input[type=number]{width:3.5em}
.da-viewer.da-dark{color:#e3e7ec}
.da-viewer.da-dark .da-instructions{background:#1c2430;border-left-color:#7aa2ff}
.da-viewer.da-dark button,.da-viewer.da-dark select{background:#1c2430;color:#e3e7ec;border-color:#4a5563}
.da-viewer.da-dark button[aria-pressed=true]{background:#7aa2ff;color:#0b0f14}
.da-viewer.da-dark fieldset{border-color:#3a4450}
.da-viewer.da-dark .da-label-row{border-bottom-color:#27303b}
.da-viewer.da-dark .da-label-desc,.da-viewer.da-dark .da-conf,.da-viewer.da-dark .da-status,.da-viewer.da-dark .da-keys,.da-viewer.da-dark .da-size{color:#a7b1bd}
.da-viewer.da-dark .da-error{color:#ff8a80}
`;

let styled = false;

/** Add the viewer's stylesheet once per document (fixed text, no task data). */
export function ensureStyle() {
  if (styled || document.getElementById('da-viewer-style')) {
    styled = true;
    return;
  }
  const style = document.createElement('style');
  style.id = 'da-viewer-style';
  style.textContent = CSS;
  document.head.appendChild(style);
  styled = true;
}
