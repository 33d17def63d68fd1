// Dead letters: what went to adp.dlq, newest first, with the reason and where it came from.
import { count, el, getJSON } from './dom.js';

export async function loadDeadLetters() {
  const body = document.querySelector('#dlq-table tbody');
  let data;
  try {
    data = await getJSON('/api/dlq');
  } catch (err) {
    body.replaceChildren(el('tr', {}, el('td', { colspan: 6, class: 'bad' }, `cannot load: ${err.message}`)));
    return;
  }
  const rows = data.items.map((d) => el('tr', { dataset: { key: d.key || '' } },
    el('td', { class: 'nowrap' }, d.time),
    el('td', {}, d.key === null ? el('span', { class: 'dim' }, '(no key)') : el('code', {}, d.key)),
    el('td', { class: 'reason' }, d.reason),
    el('td', { class: 'nowrap' }, d.source),
    el('td', {}, d.component || '–'),
    el('td', { class: 'num' }, count(d.bytes))));
  body.replaceChildren(...(rows.length ? rows : [el('tr', {}, el('td', { colspan: 6, class: 'empty' }, 'adp.dlq is empty'))]));
}
