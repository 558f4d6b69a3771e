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
    const error = new Error(errorText(payload.detail, response.status));
    error.status = response.status;
    error.signedOut = response.status === 401;  // the session ended (expired, or signed out elsewhere)
    throw error;
  }
  return payload;
}

/** A refusal in words: the server's message, or each field check FastAPI failed ("manifest: List should
 * have at most 100000 items…") — never its raw JSON, whose `input` echoes the whole request body. */
function errorText(detail, status) {
  if (typeof detail === 'string') return detail;
  if (Array.isArray(detail) && detail.length) {
    return detail.map((problem) => {
      const where = (problem?.loc || []).filter((part) => part !== 'body')
        .map((part, i) => (typeof part === 'number' ? `[${part}]` : `${i ? '.' : ''}${part}`)).join('');
      return `${where ? `${where}: ` : ''}${problem?.msg || 'invalid'}`;
    }).join('; ');
  }
  return status === 401 ? 'You are signed out; log in again.' : `HTTP ${status}`;
}

function viewerApi() {
  if (window.DicomAnnotateViewer) return Promise.resolve(window.DicomAnnotateViewer);
  return new Promise((resolve, reject) => {
    window.addEventListener('dicom-annotate-viewer-ready', () => resolve(window.DicomAnnotateViewer), { once: true });
    setTimeout(() => reject(new Error('the viewer bundle did not load (run `make viewer`)')), 30000);
  });
}

function say(text) { if ($('status')) $('status').textContent = text; }
/** Messages (text or a caught Error) into `target`; an API call refused for want of a session gets a
 * link to the login page, not just the words. */
function showMessages(target, list) {
  if (!target) return;
  target.replaceChildren();
  list.forEach((entry, index) => {
    target.append(`${index ? ' ' : ''}${entry instanceof Error ? entry.message : entry}`);
    if (entry?.signedOut) {
      const link = document.createElement('a');
      link.href = `${data.root}/login`;
      link.textContent = 'Log in again';
      target.append(' ', link);
    }
  });
}
function problems(list) { showMessages($('problems'), list); }

/** What the server says about an image the viewer could not show (404 missing, 502 Orthanc, …). */
async function imageProblem(url, fallback) {
  try {
    const response = await fetch(url, { credentials: 'same-origin' });
    if (!response.ok) {
      const payload = await response.json().catch(() => ({}));
      const what = response.status === 404 ? 'The image is missing' : `The image could not be fetched (HTTP ${response.status})`;
      return `${what}${payload.detail ? `: ${payload.detail}` : ''}.`;
    }
  } catch (error) { return `The image could not be fetched: ${error.message}.`; }
  return fallback;
}

/** In place of a viewer that could not show its image (a black viewport and the viewer's own "decode
 * failed"), what the server said about it and the way on. */
function showImageProblem(text, wayOn = '') {
  const box = document.createElement('div');
  box.className = 'image-error';
  box.setAttribute('role', 'alert');
  const what = document.createElement('strong');
  what.textContent = text;
  box.append(what);
  if (wayOn) box.append(document.createElement('br'), wayOn);
  $('viewer').replaceChildren(box);
}

async function labelLoop() {
  const viewer = await viewerApi();
  let handle = null;
  let task = null;
  let busy = false;
  const submit = $('submit');
  const skip = $('skip');
  const flag = $('flag');
  const form = $('flag-form');

  const enable = (canSubmit, canSkip) => {
    submit.disabled = !canSubmit;
    skip.disabled = !canSkip;
    flag.disabled = !canSkip;
  };
  // The message follows every change: what is still missing, or that the answer is complete.
  const check = () => {
    if (!handle) return [];
    const invalid = handle.validate();
    problems(invalid);
    $('status').textContent = invalid.length ? '' : 'Complete: Enter submits.';
    return invalid;
  };

  async function next() {
    document.body.dataset.state = 'loading';
    enable(false, false);
    problems([]);
    form.hidden = true;
    if (handle) { handle.destroy(); handle = null; }
    $('viewer').replaceChildren();
    task = await api('POST', `/api/jobs/${data.job_id}/next`);
    if (task.done) {
      $('position').textContent = 'All done: no more images for you in this job.';
      $('progress-bar').value = $('progress-bar').max;
      // No empty viewer and dead buttons: say so, and the way back.
      $('viewer').hidden = true;
      submit.closest('.task-foot').hidden = true;
      const back = document.createElement('a');
      back.href = `${data.root}/`;
      back.textContent = 'Back to your jobs';
      $('status').replaceChildren('Thank you. ', back);
      document.body.dataset.state = 'done';
      return;
    }
    $('position').textContent = `${task.slices ? 'Series' : 'Image'} ${task.position} of ${task.total}`;
    $('progress-bar').max = task.total;
    $('progress-bar').value = task.position - 1;
    say('');
    document.body.dataset.item = String(task.item_id);
    const options = { imageUrl: task.image_url, schema: task.schema, theme: 'dark', onChange: check };
    // A series or multi-frame item: the viewer's stack form, one entry per slice ({url, instance, frame}).
    if (task.slices) { delete options.imageUrl; options.slices = task.slices; }
    if (task.pixel_spacing) options.pixelSpacing = task.pixel_spacing;
    if (task.initialAnswer) options.initialAnswer = task.initialAnswer;
    enable(false, true);
    try {
      handle = await viewer.mount($('viewer'), options);
    } catch (error) {
      // A missing or undecodable image: say what happened; the way on is Skip or Flag, not a wait.
      document.body.dataset.state = 'image-error';
      showImageProblem(await imageProblem(task.image_url, error.message));
      problems(['Skip it (K) or flag it (G).']);  // beside the buttons that do it
      return;
    }
    document.body.dataset.state = 'labeling';
    enable(true, true);
    check();
    prefetch(task.prefetch);
  }

  // The likely next image into the browser's HTTP cache (the server sends it `private, max-age`), in the
  // background once this one shows: the viewer's request for the same URL after Submit is then a cache hit.
  function prefetch(next) {
    if (!next) return;
    fetch(next.image_url, { credentials: 'same-origin', headers: { 'X-Prefetch-Token': next.token } })
      .then((response) => response.arrayBuffer().then(() => {
        if (response.ok) document.body.dataset.prefetched = next.image_url;
      }))
      .catch(() => {});  // only a head start: the viewer fetches the image itself when it is its turn
  }

  async function act(kind, body) {
    if (busy || !task || task.done) return;
    busy = true;
    enable(false, false);
    try {
      await api('POST', `/api/assignments/${task.assignment_id}/${kind}`, body);
      document.body.dataset[kind === 'answer' ? 'submitted' : kind === 'skip' ? 'skipped' : 'flagged'] = String(
        Number(document.body.dataset[kind === 'answer' ? 'submitted' : kind === 'skip' ? 'skipped' : 'flagged'] || 0) + 1);
      await next();
    } catch (error) {
      say('');  // not "Complete: Enter submits" beside a refusal
      if (error.status !== 409) {
        problems([error]);
        enable(!!handle, true);
        return;
      }
      // 409: the image is no longer this page's (done in another tab, the lease ran out, the job
      // closed): waiting here cannot help, so take the next one and say why.
      try {
        await next();
        say(`Not saved: ${error.message}. This is your next image.`);
      } catch (nextError) { problems([error, nextError]); }
    } finally { busy = false; }
  }

  submit.addEventListener('click', () => {
    if (!handle || check().length) return;
    act('answer', { annotation: handle.getAnswer() });
  });
  skip.addEventListener('click', () => act('skip'));
  flag.addEventListener('click', () => {
    form.hidden = false;
    $('flag-reason').focus();
  });
  $('flag-cancel').addEventListener('click', () => { form.hidden = true; });
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    act('flag', { reason: $('flag-reason').value, comment: $('flag-comment').value });
    $('flag-comment').value = '';
  });
  document.addEventListener('keydown', (event) => {
    // A key the viewer used is prevented; so is every key that reaches Cornerstone's viewport element
    // (its keyDownListener prevents them all), which has the focus after a region is drawn there:
    // that one was not used, so Enter/K/G still work after drawing.
    const usedByViewer = event.defaultPrevented && !event.target?.closest?.('[data-da-viewport]');
    if (usedByViewer || event.ctrlKey || event.metaKey || event.altKey) return;
    const tag = event.target?.tagName;
    if (!form.hidden) {
      if (event.key === 'Escape') { form.hidden = true; event.preventDefault(); }
      // The flag form has the keyboard: Enter sends the flag (also from the reason list).
      if (event.key === 'Enter' && tag === 'SELECT') { form.requestSubmit(); event.preventDefault(); }
      return;
    }
    if (tag === 'TEXTAREA' || tag === 'SELECT' || tag === 'BUTTON' || (tag === 'INPUT' && !['radio', 'checkbox'].includes(event.target.type))) return;
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if (key === 'Enter' && !submit.disabled) submit.click();
    else if (key === 'k' && !skip.disabled) skip.click();
    else if (key === 'g' && !flag.disabled) flag.click();
    else return;
    event.preventDefault();
  });
  await next();
}

/** Index in `data.slices` of the first slice a region (consolidated or an annotator's) is drawn on; 0 if none. */
function firstRegionSlice(data) {
  const rois = [...(data.initialAnswer?.rois || []), ...(data.overlays || []).flatMap((o) => o?.answer?.rois || [])];
  const indexes = rois.map((roi) => data.slices.findIndex(
    (s) => s.instance === roi.instance && (s.frame || 0) === (roi.frame || 0))).filter((i) => i >= 0);
  return indexes.length ? Math.min(...indexes) : 0;
}

async function review() {
  const viewer = await viewerApi();
  const options = { imageUrl: data.image_url, schema: data.schema, overlays: data.overlays, theme: 'dark',
    onChange: () => problems([]) };
  if (data.slices) { delete options.imageUrl; options.slices = data.slices; }  // a series item
  if (data.pixel_spacing) options.pixelSpacing = data.pixel_spacing;
  if (data.initialAnswer) options.initialAnswer = data.initialAnswer;
  let handle = null;
  try {
    handle = await viewer.mount($('viewer'), options);
    say(`${data.slices ? 'Series' : 'Image'} ${data.position}: ${data.overlays.length} answer(s) shown as overlays.`);
    if (data.slices) await handle.goToSlice(firstRegionSlice(data));  // open where the reviewer has work
  } catch (error) {
    const problem = await imageProblem(data.image_url, error.message);
    say(problem);
    showImageProblem(problem, $('exclude') ? 'Exclude it from the export, or reopen it for the annotators.'
      : 'Decide from the answers listed above.');
  }
  document.body.dataset.state = 'reviewing';
  const decide = async (body) => {
    try {
      const result = await api('POST', `/api/review/${data.item_id}`, body);
      say(`Saved: item is ${result.state}.`);
      document.body.dataset.state = 'decided';
      document.querySelectorAll('.actions button').forEach((b) => { b.disabled = true; });
    } catch (error) { problems([error]); }
  };
  $('accept').addEventListener('click', () => decide({ action: 'accept' }));
  $('exclude')?.addEventListener('click', () => decide({ action: 'exclude' }));
  $('reopen')?.addEventListener('click', () => decide({ action: 'reopen' }));
  $('save-edit').addEventListener('click', () => {
    if (!handle) { problems(['The image did not load: exclude or reopen instead.']); return; }
    const invalid = handle.validate();
    if (invalid.length) { problems(invalid); return; }
    decide({ action: 'edit', answer: handle.getAnswer() });
  });
}

/** A job action's result in words (not raw JSON). */
function describe(action, r) {
  if (action === 'export') {
    return `Wrote ${r.written} line(s) to ${r.destination}; left out: ${r.left_out_review} waiting for review, `
      + `${r.left_out_open} unfinished, ${r.left_out_excluded} excluded. Use “Download output manifest” for a copy.`;
  }
  if (action === 'sr') {
    const stored = Object.keys(r.stored || {}).length;
    return `Stored ${stored} DICOM SR instance(s) in Orthanc.${r.errors?.length ? ` Errors: ${r.errors.join('; ')}` : ' No errors.'}`;
  }
  if (action === 'close') return `Closed: ${r.answered} of ${r.items} images answered, ${r.consolidated_at_close} consolidated at close.`;
  return `Job is ${r.state}.`;
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
      // Closing cannot be undone (no reopen; images short of K answers are consolidated as they are):
      // one click next to Pause must not end a job.
      if (button.dataset.action === 'close' && !window.confirm('Close this job for good? Annotators can no '
        + 'longer answer, and images with fewer answers than K are consolidated from what they have.')) return;
      out.textContent = '…';
      try {
        const result = await api('POST', `/api/jobs/${data.job_id}/${path}`, body);
        out.textContent = describe(button.dataset.action, result);
        out.dataset.result = JSON.stringify(result);  // the raw answer, for scripts and tests
        document.body.dataset.lastAction = button.dataset.action;
        if (['pause', 'resume', 'close'].includes(button.dataset.action)) window.location.reload();
      } catch (error) { showMessages(out, ['Error:', error]); }
    });
  });
}

async function readFile(input, what) {
  const file = input.files?.[0];
  if (!file) throw new Error(`choose the ${what} file`);
  return file.text();
}

function parseManifest(text) {
  const lines = [];
  text.split(/\r?\n/).forEach((line, index) => {
    if (!line.trim()) return;
    try { lines.push(JSON.parse(line)); } catch (error) {
      throw new Error(`manifest line ${index + 1}: not JSON (${error.message})`);
    }
  });
  if (!lines.length) throw new Error('the manifest has no lines');
  return lines;
}

async function newJob() {
  const form = $('new-job');
  const value = (id) => $(id).value.trim();
  // Choosing a file or typing a filter selects that source: the form sends only the checked one, so a
  // chosen file with its radio left unchecked would be silently ignored.
  const selects = (radio) => () => { form.querySelector(radio).checked = true; };
  $('schema-upload').addEventListener('change', selects('input[name=schema-source][value=upload]'));
  $('schema-file').addEventListener('change', selects('input[name=schema-source][value=file]'));
  $('manifest-upload').addEventListener('change', selects('input[name=image-source][value=manifest]'));
  form.querySelectorAll('.filters input, .filters select').forEach((input) => {
    input.addEventListener('input', selects('input[name=image-source][value=query]'));
  });
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    problems([]);
    const button = $('create-job');
    button.disabled = true;
    try {
      const body = { name: value('job-name') };
      if (value('job-k')) body.annotators_per_item = Number(value('job-k'));
      if (value('job-threshold')) body.agreement_threshold = Number(value('job-threshold'));
      if (form.querySelector('input[name=schema-source]:checked').value === 'file') body.schema_file = value('schema-file');
      else body.schema_text = await readFile($('schema-upload'), 'schema');
      if (form.querySelector('input[name=image-source]:checked').value === 'query') {
        const list = (id) => value(id).split(/[\s,]+/).filter(Boolean);
        body.query = { modality: list('q-modality'), study_uid: list('q-study'), series_uid: list('q-series') };
        if (value('q-from')) body.query.study_date_from = value('q-from');
        if (value('q-to')) body.query.study_date_to = value('q-to');
        if (value('q-patient')) body.query.patient_id = value('q-patient');
        if (value('q-limit')) body.query.limit = Number(value('q-limit'));
        if (value('q-level') === 'series') body.query.level = 'series';
      } else {
        body.manifest = parseManifest(await readFile($('manifest-upload'), 'manifest'));
      }
      say('Creating the job: querying Orthanc and checking every image…');
      const job = await api('POST', '/api/jobs', body);
      say(`Job ${job.name} created with ${job.items} images.`);
      document.body.dataset.created = String(job.id);
      window.location.assign(`${data.root}/jobs/${job.id}`);
    } catch (error) {
      say('');
      problems([error]);
      button.disabled = false;
    }
  });
}

function users() {
  const done = (text) => { problems([]); say(text); };
  const added = sessionStorage.getItem('portal-user-added');  // said before the reload that lists the user
  if (added) { sessionStorage.removeItem('portal-user-added'); say(added); }
  document.querySelectorAll('#users tbody tr').forEach((row) => {
    const id = row.dataset.id;
    const name = row.dataset.user;
    // A refused change (e.g. an admin disabling themselves) puts the control back: it shows what is stored.
    const change = async (body, text, undo) => {
      try { await api('PATCH', `/api/users/${id}`, body); done(text); } catch (error) { undo(); problems([error]); }
    };
    const roleSelect = row.querySelector('.user-role');
    let storedRole = roleSelect.value;
    roleSelect.addEventListener('change', (e) => change({ role: e.target.value }, `${name} is now ${e.target.value}.`,
      () => { e.target.value = storedRole; }).then(() => { storedRole = roleSelect.value; }));
    row.querySelector('.user-active').addEventListener('change', (e) => change({ active: e.target.checked },
      `${name} is ${e.target.checked ? 'enabled' : 'disabled (signed out everywhere)'}.`,
      () => { e.target.checked = !e.target.checked; }));
    row.querySelector('.user-reset')?.addEventListener('click', async () => {
      const input = row.querySelector('.user-password');
      try {
        await api('POST', `/api/users/${id}/password`, { password: input.value });
        input.value = '';
        done(`Password of ${name} reset; their sessions ended.`);
      } catch (error) { problems([error]); }
    });
  });
  $('add-user')?.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      const user = await api('POST', '/api/users', { name: $('new-name').value.trim(), role: $('new-role').value,
        password: $('new-password').value });
      sessionStorage.setItem('portal-user-added', `User ${user.name} (${user.role}) added.`);
      window.location.reload();
    } catch (error) { problems([error]); }
  });
}

const run = { label: labelLoop, review, job: async () => jobActions(), newjob: newJob, users: async () => users() }[data.mode];
run().catch((error) => {
  document.body.dataset.state = 'error';
  showMessages($('status') || $('result'), ['Error:', error]);
});
