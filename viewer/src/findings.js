/**
 * The findings panel: one present/absent (/uncertain, when the schema offers it) answer per schema
 * label (a radio group each), answered by click or by Y/N/? on the highlighted row, with the pre-label confidence beside it. The labels are
 * image-level for an image task and series-level for a series task (the same answer shape:
 * labeling/contracts/answer.py).
 */
import { el, setText } from './dom.js';

export class Findings {
  constructor(schema, { id, readOnly, scope }) {
    this.schema = schema;
    this.id = id;
    this.readOnly = readOnly;
    this.scope = scope;
    /** label name → true (present) | false (absent) | 'uncertain' (schema.uncertain) | null (not answered) */
    this.state = new Map(schema.labels.map((l) => [l.name, null]));
    this.confidence = new Map();
    this.inputs = null;  // label name → {present, absent, conf} once built
    this.current = 0;
  }

  /** The panel; `onAnswer(name, true | false | 'uncertain')` is called when a radio is clicked. */
  build(onAnswer) {
    this.inputs = new Map();
    const box = el('fieldset', { dataset: { daLabels: '' } }, el('legend', {}, `Findings in this ${this.scope}`));
    this.schema.labels.forEach((label, index) => {
      const group = `${this.id}-label-${index}`;
      const radio = (value) => {
        const input = el('input', { type: 'radio', name: group, disabled: this.readOnly,
          dataset: { daLabelIndex: String(index), daValue: value } });
        const answer = { present: true, absent: false, uncertain: 'uncertain' }[value];
        input.addEventListener('change', () => { this.focus(index); onAnswer(label.name, answer); });
        return input;
      };
      const present = radio('present');
      const absent = radio('absent');
      const uncertain = this.schema.uncertain ? radio('uncertain') : null;
      const conf = el('span', { class: 'da-conf' });
      const required = this.schema.required.includes(label.name);
      box.appendChild(el('div', { class: 'da-label-row', dataset: { daLabel: label.name } },
        el('span', { class: 'da-swatch', style: { background: label.color } }),
        el('span', { class: 'da-label-name' }, label.name, required ? ' *' : ''),
        label.description ? el('span', { class: 'da-label-desc' }, label.description) : null,
        el('span', { class: 'da-answer' }, el('label', {}, present, ' present'), el('label', {}, absent, ' absent'),
          uncertain ? el('label', {}, uncertain, ' uncertain') : null, conf)));
      this.inputs.set(label.name, { present, absent, uncertain, conf });
    });
    this.focus(0);
    return box;
  }

  /** Highlight the row that Y/N answer (wrapping around). */
  focus(index) {
    const count = this.schema.labels.length;
    this.current = ((index % count) + count) % count;
    this.schema.labels.forEach((label, i) => {
      this.inputs?.get(label.name)?.present.closest('.da-label-row')?.classList.toggle('da-current', i === this.current);
    });
  }

  get currentName() { return this.schema.labels[this.current].name; }

  set(name, value) {
    this.state.set(name, value);
    this.sync(name);
  }

  sync(name) {
    const inputs = this.inputs?.get(name);
    if (!inputs) return;
    const value = this.state.get(name);
    inputs.present.checked = value === true;
    inputs.absent.checked = value === false;
    if (inputs.uncertain) inputs.uncertain.checked = value === 'uncertain';
    const conf = this.confidence.get(name);
    setText(inputs.conf, conf === undefined ? '' : `(pre-label ${Math.round(conf * 100)}%)`);
  }

  /** Pre-answers from an initial answer's `labels` ([{name, present, confidence?}]); others ignored. */
  load(labels) {
    for (const entry of Array.isArray(labels) ? labels : []) {
      if (entry && this.state.has(entry.name) && this.schema.uncertain && entry.uncertain === true) {
        this.state.set(entry.name, 'uncertain');
      } else if (entry && this.state.has(entry.name) && typeof entry.present === 'boolean') {
        this.state.set(entry.name, entry.present);
        if (Number.isFinite(entry.confidence)) this.confidence.set(entry.name, entry.confidence);
      }
    }
    for (const name of this.state.keys()) this.sync(name);
  }

  /** The answer's `labels`: every schema label, not answered counting as not present; an uncertain one
   * as {name, uncertain: true} (no vote: labeling/contracts/answer.py). */
  verdicts() {
    return this.schema.labels.map((l) => (this.state.get(l.name) === 'uncertain'
      ? { name: l.name, uncertain: true } : { name: l.name, present: this.state.get(l.name) === true }));
  }
}
