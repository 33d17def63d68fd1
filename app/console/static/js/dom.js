// Building the page from data, safely: every piece of data becomes a text node or an attribute
// value, never markup. Nothing in this console assigns innerHTML/outerHTML or writes HTML
// strings (tests/test_console_page.py checks the sources), so an observation holding
// <script> or <img onerror=...> shows up as those characters.

const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]|\r(?!\n)/g;
const BIDI = /[\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

// Control characters as their visible pictures (␀ ␛ ␡ ...), bidirectional overrides as
// ⟨U+202E⟩, so terminal escapes and reordering tricks in model output cannot disguise text.
export function visible(text) {
  return String(text)
    .replace(/\r\n/g, '\n')
    .replace(CONTROL, (c) => (c === '\u007f' ? '\u2421' : String.fromCharCode(0x2400 + c.charCodeAt(0))))
    .replace(BIDI, (c) => `⟨U+${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}⟩`);
}

// el('td', {class: 'num', dataset: {field: 'produced'}}, 12) -> <td class="num" data-field="produced">12</td>
export function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = visible(value);
    // CSSOM, not a style attribute: the Content-Security-Policy allows no inline styles
    else if (key === 'style') Object.assign(node.style, value);
    else if (key === 'dataset') for (const [k, v] of Object.entries(value)) node.dataset[k] = String(v);
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(visible(child)));
  }
  return node;
}

const SVG = 'http://www.w3.org/2000/svg';
export function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

export function clock(unixSeconds) {
  if (!unixSeconds) return '–';
  const d = new Date(unixSeconds * 1000);
  const today = new Date().toDateString() === d.toDateString();
  const time = d.toLocaleTimeString([], { hour12: false });
  return today ? time : `${d.toISOString().slice(0, 10)} ${time}`;
}

export function seconds(value) {
  if (value === null || value === undefined) return '–';
  if (value < 1) return `${Math.round(value * 1000)} ms`;
  if (value < 120) return `${value.toFixed(1)} s`;
  return `${Math.floor(value / 60)} min ${Math.round(value % 60)} s`;
}

export function count(value) {
  return value === null || value === undefined ? '–' : Number(value).toLocaleString('en');
}

export function mark(success) {
  return success ? el('span', { class: 'ok', title: 'succeeded' }, '✓') : el('span', { class: 'bad', title: 'failed' }, '✗');
}

// A verdict's status (passed | failed | error | unverified), as Verdict.status defines it.
export function verdictMark(status) {
  if (status === 'passed') return el('span', { class: 'ok', title: 'the verifier passed it' }, 'passed');
  if (status === 'failed') return el('span', { class: 'bad', title: 'the verifier failed it' }, 'failed');
  if (status === 'error') return el('span', { class: 'warn', title: 'the verifier could not run' }, 'could not verify');
  return el('span', { class: 'dim', title: 'no verifier' }, '–');
}

// The status of a trajectory document's verification, the same way.
export function verdictStatus(verification) {
  if (!verification || !verification.verifier) return 'unverified';
  if (verification.passed === true) return 'passed';
  if (verification.passed === false) return 'failed';
  return 'error';
}

export function dollars(value) {
  return typeof value === 'number' ? `$${value < 0.01 ? value.toPrecision(2) : value.toFixed(2)}` : null;
}

export function pretty(value) {
  if (typeof value === 'string') return value;
  try { return JSON.stringify(value, null, 2); } catch (err) { return String(value); }
}

export function getJSON(url) {
  return fetch(url, { headers: { Accept: 'application/json' } }).then(async (response) => {
    if (!response.ok) {
      const error = new Error(`${response.status} ${await response.text()}`);
      error.status = response.status;
      throw error;
    }
    return response.json();
  });
}
