// Live steps: adp.steps as it happens, filtered on the server with `adp tail`'s filter, pausable.
import { append, clock, el, mark, seconds, verdictMark } from './dom.js';

const MAX_ROWS = 500;
let source = null;
let paused = false;
let held = [];

export function initSteps() {
  const form = document.getElementById('step-filters');
  let timer = null;
  form.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(connect, 300); });
  form.addEventListener('submit', (e) => e.preventDefault());
  document.getElementById('step-pause').addEventListener('click', togglePause);
  document.getElementById('step-clear').addEventListener('click', () => {
    held = [];
    document.getElementById('step-list').replaceChildren();
    note();
  });
}

export function startSteps() {
  if (!source) connect();
}

function connect() {
  if (source) source.close();
  const form = new FormData(document.getElementById('step-filters'));
  const query = new URLSearchParams();
  if (form.get('type')) query.set('type', form.get('type'));
  for (const task of String(form.get('task') || '').split(',').map((t) => t.trim()).filter(Boolean)) query.append('task', task);
  if (form.get('runtime')) query.set('runtime', String(form.get('runtime')).trim());
  if (form.get('lane')) query.set('lane', form.get('lane'));
  if (form.get('failed')) query.set('outcome', 'failed');
  held = [];
  document.getElementById('step-list').replaceChildren();
  source = new EventSource(`/api/steps?${query}`);
  source.addEventListener('step', (message) => receive(JSON.parse(message.data)));
  source.addEventListener('open', () => note());
  source.addEventListener('error', () => note('stream interrupted, reconnecting…'));
}

function receive(event) {
  if (paused) {
    held.push(event);
    if (held.length > MAX_ROWS) held.shift();
    note();
    return;
  }
  show([event]);
}

function show(events) {
  const list = document.getElementById('step-list');
  for (const event of events) list.prepend(row(event));
  while (list.childElementCount > MAX_ROWS) list.lastElementChild.remove();
}

function togglePause() {
  paused = !paused;
  if (!paused) {
    show(held);
    held = [];
  }
  note();
}

function note(problem) {
  const button = document.getElementById('step-pause');
  button.textContent = paused ? `Resume (${held.length} new)` : 'Pause';
  button.classList.toggle('active', paused);
  document.getElementById('step-note').textContent = problem || (paused ? 'paused: new events are held' : 'following adp.steps');
}

function row(e) {
  const head = el('div', { class: 'step-head' },
    el('span', { class: 'dim' }, clock(e.time)), ' ',
    el('a', { href: `#trajectory/${encodeURIComponent(e.key || e.task_id)}`, class: 'task' }, e.task_id),
    e.sample_index ? el('span', { class: 'dim' }, ` #${e.sample_index}`) : null, ' ',
    el('span', { class: 'dim' }, `${e.task_type} · ${e.runtime_id} · ${e.attempt_id.slice(0, 8)}`), ' ');
  const item = el('li', { class: `step ev-${e.event}`, dataset: { event: e.event, task: e.task_id, step: e.step_id || 0 } }, head);
  if (e.event === 'started') {
    append(head, [el('span', { class: 'tag' }, 'started')]);
    if (e.description) item.append(el('div', { class: 'text clip' }, e.description));
  } else if (e.event === 'finished') {
    append(head, [el('span', { class: `tag ${e.success ? 'ok' : 'bad'}` },
      e.success ? '✓ succeeded' : `✗ failed${e.error_type ? ` (${e.error_type})` : ''}`),
    ` after ${e.steps} steps, ${seconds(e.duration)}`,
    e.verdict && e.verdict !== 'unverified' ? [' · verified: ', verdictMark(e.verdict)] : null]);
    if (e.result) item.append(el('div', { class: 'text clip' }, e.result));
  } else {
    append(head, [el('span', { class: 'tag' }, `step ${e.step_id}`), ' ', mark(e.success), ' ',
      el('b', {}, e.action), el('span', { class: 'dim' }, ` ${seconds(e.duration)}${e.tokens ? ` · ${e.tokens} tokens` : ''}`)]);
    item.append(el('code', { class: 'params clip' }, e.params));
    if (e.observation) item.append(el('pre', { class: 'observation clip' }, e.observation));
    if (e.error) item.append(el('pre', { class: 'error clip' }, e.error));
  }
  return item;
}
