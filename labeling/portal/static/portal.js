// Portal pages' behaviour: the labeling loop (task page), review decisions, job actions.
// Data comes from the page's <script type="application/json" id="portal-data"> block; all text is
// inserted with textContent (never innerHTML), and every state-changing request carries the CSRF
// token in the X-CSRF-Token header.

const data = JSON.parse(document.getElementById('portal-data').textContent);
const $ = (id) => document.getElementById(id);

async function api(method, path, body) {
  const response = await fetch(data.root + path, {
    method,
    credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': data.csrf, Accept: 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const payload = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(payload.detail ? String(typeof payload.detail === 'string' ? payload.detail
      : JSON.stringify(payload.detail)) : `HTTP ${response.status}`);
  }
  return payload;
}

function viewerApi() {
  if (window.DicomAnnotateViewer) return Promise.resolve(window.DicomAnnotateViewer);
  return new Promise((resolve, reject) => {
    window.addEventListener('dicom-annotate-viewer-ready', () => resolve(window.DicomAnnotateViewer), { once: true });
    setTimeout(() => reject(new Error('the viewer bundle did not load (run `make viewer`)')), 30000);
  });
}

function say(text) { $('status').textContent = text; }
function problems(list) { $('problems').textContent = list.join('; '); }

async function labelLoop() {
  const viewer = await viewerApi();
  let handle = null;
  let task = null;
  const submit = $('submit');

  async function next() {
    document.body.dataset.state = 'loading';
    submit.disabled = true;
    problems([]);
    if (handle) { handle.destroy(); handle = null; }
    task = await api('POST', `/api/jobs/${data.job_id}/next`);
    if (task.done) {
      say('All done: no more items for you in this job.');
      document.body.dataset.state = 'done';
      return;
    }
    say(`Item ${task.item_id} — lease until ${new Date(task.lease_expires_at).toLocaleTimeString()}`);
    const options = { imageUrl: task.image_url, schema: task.schema };
    if (task.initialAnswer) options.initialAnswer = task.initialAnswer;
    handle = await viewer.mount($('viewer'), options);
    document.body.dataset.state = 'labeling';
    document.body.dataset.item = String(task.item_id);
    submit.disabled = false;
  }

  submit.addEventListener('click', async () => {
    const invalid = handle.validate();
    if (invalid.length) { problems(invalid); return; }
    submit.disabled = true;
    try {
      await api('POST', `/api/assignments/${task.assignment_id}/answer`, { annotation: handle.getAnswer() });
      document.body.dataset.state = 'loading';
      document.body.dataset.submitted = String(Number(document.body.dataset.submitted || 0) + 1);
      await next();
    } catch (error) {
      problems([error.message]);
      submit.disabled = false;
    }
  });
  await next();
}

async function review() {
  const viewer = await viewerApi();
  const options = { imageUrl: data.image_url, schema: data.schema, overlays: data.overlays };
  if (data.initialAnswer) options.initialAnswer = data.initialAnswer;
  const handle = await viewer.mount($('viewer'), options);
  say(`Item ${data.item_id}: ${data.overlays.length} answers shown as overlays.`);
  document.body.dataset.state = 'reviewing';
  const decide = async (body) => {
    try {
      const result = await api('POST', `/api/review/${data.item_id}`, body);
      say(`Saved: item is ${result.state}.`);
      document.body.dataset.state = 'decided';
      $('accept').disabled = true;
      $('save-edit').disabled = true;
    } catch (error) { problems([error.message]); }
  };
  $('accept').addEventListener('click', () => decide({ action: 'accept' }));
  $('save-edit').addEventListener('click', () => {
    const invalid = handle.validate();
    if (invalid.length) { problems(invalid); return; }
    decide({ action: 'edit', answer: handle.getAnswer() });
  });
}

function jobActions() {
  const out = $('result');
  const paths = {
    pause: ['state', { state: 'paused' }], resume: ['state', { state: 'active' }], close: ['close', undefined],
    export: ['export', { include_review: false }], sr: ['sr', undefined],
  };
  document.querySelectorAll('button[data-action]').forEach((button) => {
    button.addEventListener('click', async () => {
      const [path, body] = paths[button.dataset.action];
      out.textContent = '…';
      try {
        const result = await api('POST', `/api/jobs/${data.job_id}/${path}`, body);
        out.textContent = JSON.stringify(result, null, 2);
        document.body.dataset.lastAction = button.dataset.action;
        if (['pause', 'resume', 'close'].includes(button.dataset.action)) window.location.reload();
      } catch (error) { out.textContent = `Error: ${error.message}`; }
    });
  });
}

const run = { label: labelLoop, review, job: async () => jobActions() }[data.mode];
run().catch((error) => {
  document.body.dataset.state = 'error';
  const target = $('status') || $('result');
  if (target) target.textContent = `Error: ${error.message}`;
});
