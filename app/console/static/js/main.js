// The console page: one Server-Sent Events stream for the overview, broker state, trajectory
// index and dead-letter count; the tabs are hash routes (#overview, #steps, #trajectories,
// #trajectory/<task id>, #dlq).
import { count } from './dom.js';
import { loadDeadLetters } from './dlq.js';
import { retryWaiting, showTrajectory } from './detail.js';
import { renderBroker, renderOverview } from './overview.js';
import { initSteps, startSteps } from './steps.js';
import { indexChanged, initTrajectories, load as loadTrajectories } from './trajectories.js';

const VIEWS = ['overview', 'steps', 'trajectories', 'trajectory', 'dlq'];
let current = null;

function route() {
  let hash = location.hash.slice(1);
  try { hash = decodeURIComponent(hash); } catch (err) { /* a hand-typed bad escape: use it as is */ }
  let view = hash.split('/')[0] || 'overview';
  if (!VIEWS.includes(view)) view = 'overview';
  current = view;
  for (const name of VIEWS) document.getElementById(`view-${name}`).hidden = name !== view;
  for (const tab of document.querySelectorAll('#tabs a')) {
    const active = tab.dataset.tab === view || (view === 'trajectory' && tab.dataset.tab === 'trajectories');
    tab.classList.toggle('active', active);
  }
  if (view === 'steps') startSteps();
  if (view === 'trajectories') loadTrajectories();
  if (view === 'trajectory') showTrajectory(hash.slice('trajectory/'.length));
  if (view === 'dlq') loadDeadLetters();
}

function connect() {
  const link = document.getElementById('link');
  const source = new EventSource('/api/live');
  const on = (name, handle) => source.addEventListener(name, (message) => handle(JSON.parse(message.data)));
  source.addEventListener('open', () => { link.dataset.state = 'up'; link.textContent = 'live'; });
  source.addEventListener('error', () => {
    link.dataset.state = 'down';
    link.textContent = 'console server unreachable, reconnecting…';
  });
  on('config', (config) => { document.title = `ADP console · ${config.bootstrap}`; });
  on('broker', renderBroker);
  on('overview', (data) => {
    renderOverview(data);
    const dead = data.totals.dead_letters;
    document.getElementById('dlq-count').textContent = dead ? count(dead) : '';
  });
  on('index', (state) => {
    indexChanged(state, current === 'trajectories');
    retryWaiting(current === 'trajectory');
  });
  on('dlq', () => { if (current === 'dlq') loadDeadLetters(); });
}

initSteps();
initTrajectories();
window.addEventListener('hashchange', route);
route();
connect();
