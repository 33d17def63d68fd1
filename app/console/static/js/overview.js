// Overview: per task type counters, events per second, consumer groups with lag per partition.
import { append, clock, count, el, svg } from './dom.js';

const FIELDS = ['produced', 'pending', 'running', 'finished', 'failed', 'verified', 'members'];
const RATES = [
  ['steps', 'step events', 'on adp.steps'],
  ['tasks', 'tasks produced', 'on adp.tasks.*'],
  ['trajectories', 'trajectories', 'on adp.trajectories'],
];

export function renderOverview(data) {
  document.getElementById('overview-time').textContent = `read at ${clock(data.time)}`;
  renderTypes(data.types);
  renderPassAtK(data.types, data.pass_at_k_models || {});
  renderRates(data.rates);
  renderGroups(data.groups);
}

function renderTypes(types) {
  const rows = types.map((t) => {
    const done = t.produced ? Math.min(1, t.finished / t.produced) : 0;
    return [el('tr', { dataset: { type: t.task_type } },
      el('th', {}, t.task_type),
      FIELDS.map((f) => el('td', {
        class: `num${f === 'failed' && t.failed ? ' bad' : ''}`, dataset: { field: f },
      }, f === 'verified' ? verified(t) : count(t[f]))),
      el('td', { class: 'progress' },
        el('span', { class: 'bar' }, el('span', { class: 'fill', style: { width: `${(done * 100).toFixed(1)}%` } })),
        el('span', { class: 'dim' }, ` ${Math.round(done * 100)}%`))),
    lanes(t)];
  });
  const body = document.querySelector('#types tbody');
  body.replaceChildren();
  append(body, rows);
}

// Under a type, its priority lanes, once a lane other than the default one was used.
function lanes(t) {
  const named = Object.entries(t.lanes || {});
  if (!named.some(([name, lane]) => name !== 'default' && lane.produced)) return null;
  return named.map(([name, lane]) => el('tr', { class: 'lane', dataset: { type: t.task_type, lane: name } },
    el('td', { class: 'dim' }, `${name} lane`),
    ['produced', 'pending', 'running'].map((f) => el('td', { class: 'num dim', dataset: { field: f } }, count(lane[f]))),
    el('td', { colspan: 6 })));
}

function verified(t) {
  if (t.checked === null || t.checked === undefined) return '–';
  return `${count(t.verified)} of ${count(t.checked)}`;
}

// pass@k per task type and per model (1 - C(n-c,k)/C(n,k), averaged over the tasks with n >= k),
// and how many LLM calls carry token ids.
function renderPassAtK(types, models) {
  const named = [
    ...types.filter((t) => Object.keys(t.pass_at_k || {}).length).map((t) => [t.task_type, t.pass_at_k]),
    ...Object.entries(models).filter(([, r]) => Object.keys(r).length).map(([m, r]) => [`model ${m}`, r]),
  ];
  const calls = types.reduce((n, t) => n + (t.llm_calls || 0), 0);
  const exact = types.reduce((n, t) => n + (t.token_calls || 0), 0);
  const note = el('div', { class: 'dim', dataset: { field: 'token-calls' } },
    `LLM calls with token ids: ${count(exact)} of ${count(calls)}`);
  const box = document.getElementById('passk');
  if (!named.length) {
    box.replaceChildren(el('span', { class: 'dim' }, 'no judged samples yet'), note);
    return;
  }
  const ks = [...new Set(named.flatMap(([, r]) => Object.keys(r).map(Number)))].sort((a, b) => a - b);
  box.replaceChildren(el('table', { class: 'grid small' },
    el('thead', {}, el('tr', {}, el('th', {}, ''), ks.map((k) => el('th', { class: 'num' }, `pass@${k}`)))),
    el('tbody', {}, named.map(([name, r]) => el('tr', { dataset: { passk: name } },
      el('th', {}, name),
      ks.map((k) => el('td', { class: 'num', title: r[k] ? `${r[k].tasks} tasks` : '' },
        r[k] ? r[k].pass.toFixed(2) : '–')))))), note);
}

function renderRates(rates) {
  const cards = RATES.map(([key, title, where]) => {
    const points = rates[key] || [];
    const now = points.length ? points[points.length - 1][1] : 0;
    const peak = points.reduce((m, p) => Math.max(m, p[1]), 0);
    return el('div', { class: 'rate', dataset: { rate: key } },
      el('div', { class: 'rate-head' }, el('b', {}, title), el('span', { class: 'dim' }, ` ${where}`)),
      el('div', { class: 'rate-now' }, `${now.toFixed(1)}`, el('small', {}, ' /s')),
      sparkline(points, peak),
      el('div', { class: 'dim' }, `peak ${peak.toFixed(1)}/s`));
  });
  document.getElementById('rates').replaceChildren(...cards);
}

function sparkline(points, peak) {
  const width = 320;
  const height = 56;
  const box = svg('svg', { viewBox: `0 0 ${width} ${height}`, class: 'spark', preserveAspectRatio: 'none' });
  if (points.length < 2) return box;
  const t0 = points[0][0];
  const span = Math.max(1, points[points.length - 1][0] - t0);
  const top = Math.max(peak, 1e-9);
  const xy = points.map(([t, v]) => [((t - t0) / span) * width, height - 2 - (v / top) * (height - 4)]);
  const line = xy.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(' ');
  box.append(svg('polygon', { points: `0,${height} ${line} ${width},${height}`, class: 'area' }));
  box.append(svg('polyline', { points: line, class: 'line' }));
  return box;
}

function renderGroups(groups) {
  const cards = groups.map((g) => {
    const head = el('div', { class: 'group-head' },
      el('b', {}, g.group), el('span', { class: 'dim' }, ` on ${g.topics.join(', ')} · ${g.state} · `),
      `${g.members.length} member${g.members.length === 1 ? '' : 's'} · lag `,
      el('b', { dataset: { field: 'lag' } }, count(g.lag)));
    // a topic nothing was ever produced to is named, not tabled (lanes often stay empty)
    const used = g.topics.filter((topic) => g.partitions.some((p) => p.topic === topic && p.end > 0));
    const empty = g.topics.filter((topic) => !used.includes(topic));
    if (!used.length && !g.members.length) {
      return el('div', { class: 'group idle', dataset: { group: g.group } }, head,
        el('div', { class: 'dim' }, `nothing produced to ${g.topics.join(', ')} yet, no consumer running`));
    }
    const rows = g.partitions.filter((p) => used.includes(p.topic));
    const maxLag = Math.max(1, ...rows.map((p) => p.lag));
    return el('div', { class: 'group', dataset: { group: g.group } }, head,
      rows.length ? el('table', { class: 'grid small' },
        el('thead', {}, el('tr', {},
          ['partition', 'end', 'committed', 'lag', 'running', 'owner'].map((h) => el('th', { class: h === 'owner' || h === 'partition' ? '' : 'num' }, h)))),
        el('tbody', {}, rows.map((p) => el('tr', { dataset: { topic: p.topic, partition: p.partition } },
          el('td', {}, used.length > 1 || g.topics.length > 1 ? `${p.topic} [${p.partition}]` : `${p.partition}`),
          el('td', { class: 'num' }, count(p.end)),
          el('td', { class: 'num' }, count(p.committed)),
          el('td', { class: 'num lagcell' },
            el('span', { class: 'lagbar', style: { width: `${((p.lag / maxLag) * 100).toFixed(0)}%` } }),
            el('span', { class: 'lagnum' }, count(p.lag))),
          el('td', { class: 'num' }, count(p.running)),
          el('td', { class: p.owner ? '' : 'dim' }, p.owner || 'unassigned'))))) : null,
      empty.length ? el('div', { class: 'dim small-note' }, `nothing produced yet to ${empty.join(', ')}`) : null,
      g.members.length ? el('ul', { class: 'members' }, g.members.map((m) => el('li', {},
        el('code', {}, m.client_id), el('span', { class: 'dim' }, ` @ ${m.host} → `),
        owned(m.partitions, g.topics.length > 1),
        m.paused ? el('span', { class: 'tag warn paused', title: m.paused.why },
          `paused since ${clock(m.paused.since)}: ${m.paused.why}`) : null))) : null);
  });
  document.getElementById('groups').replaceChildren(...cards);
}

function owned(partitions, named) {
  const entries = Object.entries(partitions || {});
  if (!entries.length) return 'no partitions';
  return entries.map(([topic, ps]) => `${named ? `${topic} ` : 'partitions '}${ps.join(', ')}`).join(' · ');
}

export function renderBroker(broker) {
  const badge = document.getElementById('broker');
  const banner = document.getElementById('banner');
  if (broker.up) {
    badge.dataset.state = 'up';
    badge.textContent = `Kafka ${broker.bootstrap}: connected`;
    badge.title = `answering since ${clock(broker.since)}`;
    banner.hidden = true;
  } else if (broker.up === false) {
    badge.dataset.state = 'down';
    badge.textContent = `Kafka ${broker.bootstrap}: unreachable since ${clock(broker.since)}`;
    badge.title = broker.error || '';
    banner.replaceChildren();
    append(banner, [el('b', {}, `Kafka at ${broker.bootstrap} does not answer since ${clock(broker.since)}`),
      ` (${broker.error || 'no answer'}). The console keeps retrying; the numbers shown are the last ones read.`]);
    banner.hidden = false;
  }
}
