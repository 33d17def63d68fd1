// One trajectory, step by step: thinking, action and parameters, observation, errors, tokens,
// latency, and the raw LLM exchange (collapsed). Everything is shown as text.
import { append, clock, count, dollars, el, getJSON, mark, pretty, seconds, verdictStatus, visible } from './dom.js';

const CODE_ACTIONS = new Set(['code_execution', 'python', 'python_executor', 'run_python']);

let waiting = null; // the key of a trajectory asked for before it was stored

export async function showTrajectory(key) {
  const box = document.getElementById('traj-detail');
  if (waiting !== key) box.replaceChildren(el('p', { class: 'dim' }, `loading ${key}…`));
  waiting = null;
  let doc;
  try {
    doc = await getJSON(`/api/trajectories/${encodeURIComponent(key)}`);
  } catch (err) {
    if (err.status === 404) {
      // e.g. a live step's link while its task still runs: shown once the sink has it
      waiting = key;
      box.replaceChildren(el('p', { class: 'dim' }, `${key} is not stored yet (still running, or the aggregator has not written it); it opens here when it is.`));
    } else {
      box.replaceChildren(el('p', { class: 'bad' }, `cannot show ${key}: ${err.message}`));
    }
    return;
  }
  box.replaceChildren();
  append(box, render(doc, key));
}

// The index moved: a trajectory this page waits for may have landed.
export function retryWaiting(visible) {
  if (visible && waiting !== null) showTrajectory(waiting);
}

function render(doc, key) {
  const meta = doc.metadata || {};
  const steps = Array.isArray(doc.steps) ? doc.steps : [];
  const verification = doc.verification;
  const status = verdictStatus(verification);
  const claimed = doc.claimed_success === null || doc.claimed_success === undefined ? doc.success : doc.claimed_success;
  return [
    el('h2', { class: 'title' }, el('span', { class: 'task' }, doc.task_id),
      doc.sample_index ? el('span', { class: 'tag', title: 'sample index' }, `sample ${doc.sample_index}`) : null,
      el('span', { class: 'tag' }, doc.task_type),
      el('span', { class: `tag ${doc.success ? 'ok' : 'bad'}`, dataset: { part: 'success' } }, doc.success ? '✓ succeeded' : '✗ failed'),
      claimed !== doc.success ? el('span', { class: 'tag', title: "the agent's own claim" }, `the agent claimed ${claimed ? 'success' : 'failure'}`) : null,
      status !== 'unverified' ? el('span', { class: `tag ${status === 'passed' ? 'ok' : status === 'failed' ? 'bad' : 'warn'}`, dataset: { part: 'verdict' } },
        `verified: ${status === 'error' ? 'could not verify' : status}`) : el('span', { class: 'tag dim' }, 'no verifier')),
    el('section', { class: 'card' }, el('h3', {}, 'Task'), el('div', { class: 'text', dataset: { part: 'description' } }, doc.description || '')),
    el('dl', { class: 'meta' },
      term('runtime', meta.runtime_id), term('attempt', meta.attempt_id),
      term('started', clock(meta.started_at)), term('finished', clock(meta.finished_at)),
      term('duration', seconds(doc.total_duration)), term('steps', steps.length),
      term('LLM calls', `${count(meta.llm_calls)}${meta.cached_llm_calls ? ` (${meta.cached_llm_calls} cached)` : ''}`),
      term('tokens', `${count(meta.prompt_tokens)} prompt + ${count(meta.completion_tokens)} completion`),
      dollars(meta.cost_usd) ? term('cost', dollars(meta.cost_usd)) : null,
      meta.error_type ? term('error type', meta.error_type) : null),
    meta.error ? el('pre', { class: 'error' }, meta.error) : null,
    el('section', { class: 'card' }, el('h3', {}, 'Final result'),
      el('div', { class: 'text', dataset: { part: 'final' } }, doc.final_result || '(none)')),
    status !== 'unverified' ? verificationCard(verification, status) : null,
    el('h3', {}, `Steps (${steps.length})`),
    steps.map((step) => stepCard(step, doc, key)),
    collapsed('The task as produced', meta.task),
    collapsed('The whole document (JSON)', doc),
  ];
}

function verificationCard(v, status) {
  return el('section', { class: 'card', dataset: { part: 'verification' } }, el('h3', {}, 'Verification'),
    el('dl', { class: 'meta' },
      term('verifier', v.verifier), term('verdict', status === 'error' ? 'could not verify' : status),
      v.score !== null && v.score !== undefined ? term('score', v.score) : null,
      v.duration ? term('took', seconds(v.duration)) : null),
    v.details ? el('div', { class: 'text' }, v.details) : null,
    v.error ? el('pre', { class: 'error' }, v.error) : null,
    collapsed('The verify spec', v.spec),
    v.llm ? collapsed(`The judge's LLM request (${v.llm.provider} · ${v.llm.model})`, v.llm.request, conversation) : null,
    v.llm ? collapsed("The judge's LLM response", v.llm.response, reply) : null);
}

function term(name, value) {
  return [el('dt', {}, name), el('dd', {}, value === undefined || value === null ? '–' : value)];
}

function stepCard(step, doc, key) {
  const taskType = doc.task_type;
  const llm = step.llm;
  const params = step.action_params;
  const code = params && typeof params === 'object' && typeof params.code === 'string' ? params.code : null;
  const rest = code !== null ? Object.fromEntries(Object.entries(params).filter(([k]) => k !== 'code')) : params;
  const pageText = taskType === 'web' && code === null && !CODE_ACTIONS.has(step.action_type);
  return el('article', { class: `step-card ${step.success ? '' : 'failed'}`, dataset: { step: step.step_id } },
    el('header', {},
      el('b', {}, `Step ${step.step_id}`), ' ', mark(step.success), ' ',
      el('span', { class: 'action' }, step.action_type),
      el('span', { class: 'dim' }, ` · ${seconds(step.duration)} · ${clock(step.timestamp)}`),
      llm ? el('span', { class: 'dim' }, ` · ${count(llm.prompt_tokens)}+${count(llm.completion_tokens)} tokens · LLM ${seconds(llm.latency)}${llm.cached ? ' (cached)' : ''}${dollars(llm.cost_usd) ? ` · ${dollars(llm.cost_usd)}` : ''}`) : null),
    step.thinking ? part('Thinking', el('div', { class: 'text thinking' }, step.thinking)) : null,
    part('Action', [
      code !== null ? el('pre', { class: 'code', dataset: { part: 'code' } }, code) : null,
      rest && (typeof rest !== 'object' || Object.keys(rest).length) ? el('pre', { class: 'params' }, pretty(rest)) : null,
    ]),
    step.observation
      ? part(pageText ? 'Observation (page text)' : 'Observation',
        el(pageText ? 'div' : 'pre', { class: pageText ? 'text observation' : 'observation', dataset: { part: 'observation' } }, step.observation))
      : part('Observation', el('div', { class: 'dim', dataset: { part: 'observation' } }, '(none: no tool ran)')),
    step.error ? part('Error', el('pre', { class: 'error' }, step.error)) : null,
    files(step, doc.task_id),
    llm ? el('div', { class: 'raw' },
      requestPart(llm, step, key),
      collapsed('LLM response', llm.response, reply)) : null);
}

// A request stored as what it added to an earlier step's (prefix_step): the server rebuilds it
// whole (schemas/conversation.py) when it is opened; the stored form is in the document's JSON.
function requestPart(llm, step, key) {
  const title = `LLM request (${llm.provider} · ${llm.model})`;
  if (llm.prefix_step === null || llm.prefix_step === undefined) return collapsed(title, llm.request, conversation);
  const added = llm.request && Array.isArray(llm.request.messages) ? llm.request.messages.length : 0;
  const url = `/api/trajectories/${encodeURIComponent(key)}?request=${encodeURIComponent(step.step_id)}`;
  return collapsed(`${title}: ${llm.prefix_messages} message(s) of step ${llm.prefix_step}'s, then ${added} new`,
    () => getJSON(url), conversation);
}

// The request as the model saw it: each message with its role and its text as written.
function conversation(request, body) {
  const messages = request && Array.isArray(request.messages) ? request.messages : null;
  if (!messages) return false;
  for (const m of messages) {
    body.append(el('div', { class: 'message' },
      el('div', { class: 'role' }, String(m.role || '?'), m.name ? ` (${m.name})` : '', m.tool_call_id ? ` · ${m.tool_call_id}` : ''),
      typeof m.content === 'string' ? el('pre', {}, m.content) : m.content ? el('pre', {}, pretty(m.content)) : null,
      m.tool_calls ? el('pre', { class: 'calls' }, pretty(m.tool_calls)) : null));
  }
  const rest = Object.fromEntries(Object.entries(request).filter(([k]) => k !== 'messages'));
  body.append(el('div', { class: 'message' }, el('div', { class: 'role' }, 'parameters'), el('pre', {}, pretty(rest))));
  return true;
}

// The response: the message the model sent back, then the rest (usage, finish reason).
function reply(response, body) {
  const choice = response && Array.isArray(response.choices) ? response.choices[0] : null;
  const message = choice && choice.message;
  if (!message) return false;
  body.append(el('div', { class: 'message' },
    el('div', { class: 'role' }, `${message.role || 'assistant'}${choice.finish_reason ? ` · finish: ${choice.finish_reason}` : ''}`),
    message.reasoning_content ? el('pre', { class: 'thinking' }, message.reasoning_content) : null,
    typeof message.content === 'string' ? el('pre', {}, message.content) : null,
    message.tool_calls ? el('pre', { class: 'calls' }, pretty(message.tool_calls)) : null));
  const rest = Object.fromEntries(Object.entries(response).filter(([k]) => k !== 'choices'));
  body.append(el('div', { class: 'message' }, el('div', { class: 'role' }, 'the rest of the response'), el('pre', {}, pretty(rest))));
  return true;
}

const IMAGES = new Set(['image/png', 'image/jpeg', 'image/gif', 'image/webp']);
const TEXT = /^(text\/|application\/(json|xml|x-ndjson))/;

// The files a step's code wrote (plots, CSVs, ...), stored beside the trajectory: images
// shown, text readable on demand, everything downloadable; the server never serves them as
// pages (they came out of the sandbox).
function files(step, taskId) {
  const list = Array.isArray(step.artifacts) ? step.artifacts : [];
  if (!list.length) return null;
  return part(`Files the step wrote (${list.length})`, list.map((a) => {
    const url = `/api/artifacts/${encodeURIComponent(taskId)}/step-${step.step_id}/${String(a.name).split('/').map(encodeURIComponent).join('/')}`;
    const head = el('div', {},
      el('code', {}, a.name), el('span', { class: 'dim' }, ` · ${a.media_type} · ${bytes(a.size)} · sha256 ${String(a.sha256 || '').slice(0, 12)}`),
      a.kept ? [' · ', el('a', { href: url, download: String(a.name).split('/').pop() }, 'download')]
        : el('span', { class: 'warn' }, ` · not kept${a.note ? `: ${a.note}` : ''}`));
    let body = null;
    if (a.kept && IMAGES.has(a.media_type)) body = el('img', { src: url, alt: a.name, class: 'artifact-img', loading: 'lazy' });
    else if (a.kept && TEXT.test(a.media_type || '') && a.size <= 256 * 1024) body = fetched('show', url);
    return el('div', { class: 'artifact', dataset: { artifact: a.name } }, head, body);
  }));
}

function fetched(title, url) {
  const body = el('pre', { class: 'raw-json' });
  const box = el('details', {}, el('summary', {}, title), body);
  box.addEventListener('toggle', () => {
    if (!box.open || body.firstChild) return;
    fetch(url).then((r) => (r.ok ? r.text() : Promise.reject(new Error(`${r.status}`))))
      .then((text) => { body.textContent = visible(text); })
      .catch((err) => { body.textContent = `cannot load: ${err.message}`; });
  });
  return box;
}

function bytes(n) {
  if (typeof n !== 'number') return '?';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function part(title, content) {
  return el('div', { class: 'part' }, el('div', { class: 'part-title' }, title), content);
}

// Closed until asked for, and only built then: a raw exchange can be megabytes of JSON.
// `readable(value, body)` may lay the value out for reading; the exact JSON stays one click away.
// `value` may be a function that loads it (called once, when first opened).
function collapsed(title, value, readable) {
  if (value === undefined || value === null) return null;
  const body = el('div', { class: 'raw-body' });
  const box = el('details', {}, el('summary', {}, title), body);
  box.addEventListener('toggle', async () => {
    if (!box.open || body.firstChild) return;
    let shown = value;
    if (typeof value === 'function') {
      body.append(el('p', { class: 'dim' }, 'loading…'));
      try {
        shown = await value();
      } catch (err) {
        body.replaceChildren(el('p', { class: 'bad' }, `cannot load: ${err.message}`));
        return;
      }
      body.replaceChildren();
    }
    const json = el('pre', { class: 'raw-json' }, visible(pretty(shown)));
    if (readable && readable(shown, body)) body.append(el('details', {}, el('summary', {}, 'as JSON'), json));
    else body.append(json);
  });
  return box;
}
