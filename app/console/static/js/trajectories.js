// The trajectory list: one page at a time from the server's index, filtered and searched there.
import { append, clock, count, dollars, el, getJSON, mark, seconds, verdictMark } from './dom.js';

const PAGE = 50;
let offset = 0;
let generation = -1;
let loading = null;
let again = false;

export function initTrajectories() {
  const form = document.getElementById('traj-filters');
  let timer = null;
  form.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => { offset = 0; load(); }, 250);
  });
  form.addEventListener('submit', (e) => { e.preventDefault(); offset = 0; load(); });
  document.getElementById('traj-prev').addEventListener('click', () => { offset = Math.max(0, offset - PAGE); load(); });
  document.getElementById('traj-next').addEventListener('click', () => { offset += PAGE; load(); });
}

// The index moved (new or changed trajectories): refresh what is shown if it is the first page.
export function indexChanged(state, visible) {
  const label = document.getElementById('traj-count');
  label.textContent = state.trajectories ? count(state.trajectories) : '';
  if (visible && offset === 0 && state.generation !== generation) load();
  generation = state.generation;
}

export function load() {
  if (loading) { again = true; return loading; }
  const form = new FormData(document.getElementById('traj-filters'));
  const query = new URLSearchParams({ offset: String(offset), limit: String(PAGE) });
  for (const key of ['q', 'type', 'success', 'verified']) if (form.get(key)) query.set(key, form.get(key));
  loading = getJSON(`/api/trajectories?${query}`)
    .then(render)
    .catch((err) => { document.getElementById('traj-note').textContent = `cannot load the list: ${err.message}`; })
    .finally(() => {
      loading = null;
      if (again) { again = false; load(); }
    });
  return loading;
}

function render(page) {
  if (page.total && page.offset >= page.total) { offset = Math.max(0, page.total - PAGE); load(); return; }
  const rows = page.items.map((t) => {
    const target = `#trajectory/${encodeURIComponent(t.key)}`;
    return el('tr', {
      dataset: { task: t.key }, tabindex: 0,
      onclick: () => { location.hash = target; },
      onkeydown: (e) => { if (e.key === 'Enter') location.hash = target; },
    },
    el('td', {}, el('a', { href: target, class: 'task' }, t.task_id),
      t.sample_index ? el('span', { class: 'dim', title: 'sample index' }, ` #${t.sample_index}`) : null),
    el('td', {}, t.task_type),
    el('td', {}, mark(t.success), t.error_type ? el('span', { class: 'dim' }, ` ${t.error_type}`) : null,
      t.claimed !== t.success ? el('span', { class: 'dim', title: "the agent's own claim" }, ` (claimed ${t.claimed ? '✓' : '✗'})`) : null),
    el('td', {}, verdictMark(t.verdict)),
    el('td', { class: 'num' }, t.steps),
    el('td', { class: 'num' }, seconds(t.duration)),
    el('td', { class: 'num' }, count(t.tokens), dollars(t.cost_usd) ? el('div', { class: 'dim' }, dollars(t.cost_usd)) : null),
    el('td', { class: 'dim nowrap' }, clock(t.finished_at)),
    el('td', { class: 'clip desc', title: t.description }, t.description));
  });
  const body = document.querySelector('#traj-table tbody');
  body.replaceChildren(...(rows.length ? rows : [el('tr', {}, el('td', { colspan: 9, class: 'empty' },
    page.trajectories ? 'no trajectory matches these filters' : `no trajectories in ${page.location} yet`))]));
  const first = page.total ? page.offset + 1 : 0;
  const last = page.offset + page.items.length;
  document.getElementById('traj-range').textContent = `${count(first)}–${count(last)} of ${count(page.total)}`;
  document.getElementById('traj-prev').disabled = page.offset === 0;
  document.getElementById('traj-next').disabled = last >= page.total;
  const indexing = page.indexed < page.objects ? ` · indexing ${count(page.indexed)} of ${count(page.objects)} objects…` : '';
  const problems = [page.error, ...(page.problems || [])].filter(Boolean);
  const note = document.getElementById('traj-note');
  note.replaceChildren();
  append(note, [`${count(page.trajectories)} trajectories in ${page.location}${indexing}`,
    problems.map((p) => el('div', { class: 'bad' }, p))]);
}
