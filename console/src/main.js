// The Meridian console: asks for the admin token once (kept in sessionStorage, so for this
// tab only), then reads GET /v1/admin/overview every second and redraws. Everything shown
// is a count, a state or public data: the overview carries no personal data.
import { select } from 'd3';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { WorldMap } from './map.js';
import { PALETTE } from './places.js';
import { bytes, clock, dec, duration, int } from './format.js';

const TOKEN_KEY = 'meridian.adminToken';
const POLL_MS = 1000;
const CHART_POINTS = 180; // three minutes of one-second samples

const $ = (id) => document.getElementById(id);
const status = (text, state = 'ok') => {
  const el = $('status');
  if (el.textContent !== text) el.textContent = text;
  el.dataset.state = state;
};

let timer = null;
let map = null;
let chart = null;
let previous = null; // the last sample of the cluster's answer counters
const series = [[], [], []]; // time (s), purchases/s, sold-out answers/s
const colors = new Map();

function colorOf(region) {
  return colors.get(region) || '#bdbdbd';
}

function showLogin(message = '') {
  clearTimeout(timer);
  timer = null;
  $('dashboard').hidden = true;
  $('forget').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message;
  status('Not connected', 'off');
  $('token').focus();
}

function showDashboard() {
  $('login').hidden = true;
  $('dashboard').hidden = false;
  $('forget').hidden = false;
  if (!map) map = new WorldMap($('map'));
  if (!chart) chart = makeChart($('chart'));
}

$('login-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const token = $('token').value.trim();
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  $('token').value = '';
  start();
});

$('forget').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin();
});

function start() {
  showDashboard();
  status('Connecting…', 'busy');
  clearTimeout(timer);
  poll();
}

async function poll() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) return showLogin();
  try {
    const res = await fetch('/v1/admin/overview', {
      headers: { authorization: `Bearer ${token}` },
      cache: 'no-store',
    });
    if (res.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      return showLogin('The cluster refused that token (401 unauthenticated). Try again.');
    }
    if (!res.ok) throw new Error(`the node answered ${res.status}`);
    render(await res.json());
    status(`Live · updated ${clock(new Date().toISOString())}`, 'ok');
  } catch (err) {
    status(`Connection lost (${err.message}); retrying every second`, 'error');
  }
  timer = setTimeout(poll, POLL_MS);
}

function render(data) {
  let i = 0;
  for (const r of data.regions) if (r.role !== 'edge') colors.set(r.name, PALETTE[i++ % PALETTE.length]);
  map.update(data, colorOf);
  renderLegend(data);
  renderRegions(data);
  renderMigrations(data.migrations || []);
  renderChart(data);
  renderSales(data.sales || []);
  renderAudit(data);
}

function renderLegend(data) {
  const homes = data.regions.filter((r) => r.role !== 'edge');
  $('map-summary').textContent =
    `${int(data.users_homed_total)} users in ${homes.length} home regions · policy version ` +
    `${data.policy.version} (${data.policy.name || 'unnamed'}) · answered by ${data.answered_by}`;
  select($('legend'))
    .selectAll('li')
    .data(homes, (r) => r.name)
    .join((enter) => {
      const li = enter.append('li');
      li.append('span').attr('class', 'swatch').attr('aria-hidden', 'true');
      li.append('span').attr('class', 'text');
      return li;
    })
    .call((li) => li.select('.swatch').style('background', (r) => colorOf(r.name)))
    .call((li) =>
      li.select('.text').text((r) => `${r.name}${r.name === data.policy.default_region ? ' (default)' : ''}`),
    );
}

// Rows keyed by `key`, cells filled by `cells(d)` -> [{text, cls}] each time.
function table(tbody, rows, key, cells, attr = 'data-key') {
  select(tbody)
    .selectAll('tr')
    .data(rows, key)
    .join('tr')
    .attr(attr, key)
    .each(function fill(d) {
      select(this)
        .selectAll('td,th')
        .data(cells(d))
        .join((enter) => enter.append((c) => document.createElement(c.header ? 'th' : 'td')))
        .attr('scope', (c) => (c.header ? 'row' : null))
        .attr('class', (c) => c.cls || null)
        .text((c) => c.text);
    });
}

function renderRegions(data) {
  table(
    $('regions').tBodies[0],
    data.regions,
    (r) => r.name,
    (r) => [
      { text: r.name, header: true },
      { text: r.role },
      { text: r.health === 'ok' ? 'ok' : r.health, cls: r.health === 'ok' ? 'ok' : 'bad' },
      { text: r.role === 'edge' ? 'none (edge)' : int(r.users_homed), cls: 'num users' },
      { text: r.policy_version === undefined ? '–' : `v${r.policy_version}`, cls: 'num' },
    ],
    'data-region',
  );
}

function renderMigrations(list) {
  const root = select($('migrations'));
  root
    .selectAll('p.empty')
    .data(list.length ? [] : [1])
    .join('p')
    .attr('class', 'empty muted')
    .text('No migration is running or recent.');
  const items = root
    .selectAll('article.migration')
    .data(list, (m) => m.id)
    .join((enter) => {
      const a = enter.append('article').attr('class', 'migration');
      a.append('h3');
      const label = a.append('label');
      label.append('span').attr('class', 'visually-hidden');
      label.append('progress');
      a.append('p').attr('class', 'figures');
      a.append('ul').attr('class', 'destinations');
      return a;
    })
    .attr('data-migration', (m) => m.id)
    .attr('data-state', (m) => m.state);
  items.select('h3').text((m) => `${m.from} → ${Object.keys(m.destinations).join(', ') || '…'} · ${m.state}${m.paused ? ' (paused)' : ''}`);
  items.select('label span').text((m) => `Progress of migration ${m.id}`);
  items
    .select('progress')
    .attr('max', (m) => Math.max(1, m.users_total))
    .attr('value', (m) => m.users_moved)
    .text((m) => `${m.users_moved} of ${m.users_total}`);
  items.select('p.figures').text((m) => {
    const parts = [
      `${int(m.users_moved)} of ${int(m.users_total)} users moved`,
      `${dec(m.rate_users_per_s)} users/s`,
      m.state !== 'running' ? `finished ${clock(m.finished_at)}` : m.paused ? 'on hold' : `ETA ${duration(m.eta_s)}`,
      bytes(m.bytes),
    ];
    if (m.users_failed) parts.push(`${int(m.users_failed)} failed`);
    if (!m.coordinator_reachable) parts.push(`${m.from} unreachable: last known status`);
    return parts.join(' · ');
  });
  items
    .select('ul.destinations')
    .selectAll('li')
    .data((m) => Object.entries(m.destinations))
    .join('li')
    .text(([to, d]) => `to ${to}: ${int(d.moved)} of ${int(d.users)}`);
  items.select('h3').attr('id', (m) => `mig-${m.id}`);
}

function makeChart(el) {
  const width = () => Math.max(280, el.clientWidth || 600);
  const plot = new uPlot(
    {
      width: width(),
      height: 220,
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(5, max * 1.1)] } },
      axes: [{ stroke: '#333' }, { stroke: '#333', label: 'per second' }],
      series: [
        {},
        { label: 'purchases/s', stroke: '#0072B2', width: 2, value: (u, v) => (v == null ? '–' : dec(v)) },
        { label: 'sold-out answers/s', stroke: '#D55E00', width: 2, dash: [6, 3], value: (u, v) => (v == null ? '–' : dec(v)) },
      ],
    },
    series,
    el,
  );
  new ResizeObserver(() => plot.setSize({ width: width(), height: 220 })).observe(el);
  return plot;
}

function renderChart(data) {
  const now = Date.parse(data.as_of) / 1000 || Date.now() / 1000;
  const answers = data.answers || { purchases: 0, sold_out: 0 };
  if (previous && now > previous.t) {
    const dt = now - previous.t;
    // A restarted node starts its counters again: never draw a negative rate.
    const rate = (a, b) => Math.max(0, (a - b) / dt);
    series[0].push(now);
    series[1].push(rate(answers.purchases, previous.purchases));
    series[2].push(rate(answers.sold_out, previous.sold_out));
    if (series[0].length > CHART_POINTS) series.forEach((s) => s.shift());
    chart.setData(series);
    $('chart-now').textContent =
      `Now ${dec(series[1].at(-1))} purchases/s and ${dec(series[2].at(-1))} sold-out answers/s ` +
      `(${int(answers.purchases)} purchases and ${int(answers.sold_out)} sold-out answers in all).`;
  }
  if (!previous || now > previous.t) previous = { t: now, ...answers };
}

function renderSales(list) {
  const root = select($('sales'));
  root
    .selectAll('p.empty')
    .data(list.length ? [] : [1])
    .join('p')
    .attr('class', 'empty muted')
    .text('No sale is open or recent.');
  const cards = root
    .selectAll('article.sale')
    .data(list, (s) => s.id)
    .join((enter) => {
      const a = enter.append('article').attr('class', 'sale');
      a.append('h3');
      const dl = a.append('dl').attr('class', 'figures');
      for (const [cls, name] of [
        ['sold', 'Sold'],
        ['remaining', 'Remaining'],
        ['oversold', 'Oversold'],
        ['soldout', 'Sold out at'],
      ]) {
        const div = dl.append('div').attr('class', cls);
        div.append('dt').text(name);
        div.append('dd');
      }
      const label = a.append('label');
      label.append('span').attr('class', 'visually-hidden');
      label.append('progress');
      const wrap = a.append('div').attr('class', 'scroll').attr('tabindex', 0).attr('role', 'region');
      const t = wrap.append('table');
      t.append('caption');
      t.append('thead')
        .append('tr')
        .selectAll('th')
        .data(['Region', 'Quota', 'Sold', 'Remaining'])
        .join('th')
        .attr('scope', 'col')
        .attr('class', (d, i) => (i ? 'num' : null))
        .text((d) => d);
      t.append('tbody');
      return a;
    })
    .attr('data-sale', (s) => s.id)
    .attr('data-state', (s) => s.state);
  cards.select('h3').text((s) => `${s.id} · ${s.sku} · ${s.state.replace('_', ' ')}`);
  cards.select('.sold dd').text((s) => `${int(s.sold)} of ${int(s.stock)}`);
  cards.select('.remaining dd').text((s) => int(s.remaining));
  cards
    .select('.oversold dd')
    .text((s) => int(s.oversold))
    .attr('class', (s) => (s.oversold === 0 ? 'ok' : 'bad'));
  cards.select('.soldout dd').text((s) => (s.sold_out_at ? clock(s.sold_out_at) : 'not sold out'));
  cards.select('label span').text((s) => `Units sold in sale ${s.id}`);
  cards
    .select('progress')
    .attr('max', (s) => Math.max(1, s.stock))
    .attr('value', (s) => s.sold);
  cards.select('.scroll').attr('aria-label', (s) => `Sale ${s.id} by region`);
  cards.select('caption').text((s) => `Sale ${s.id} by region${s.complete ? '' : ' (some regions did not answer)'}`);
  cards.each(function perRegion(s) {
    table(
      select(this).select('tbody').node(),
      Object.entries(s.per_region),
      ([region]) => region,
      ([region, q]) => [
        { text: region, header: true },
        { text: int(q.quota), cls: 'num' },
        { text: int(q.sold), cls: 'num' },
        { text: int(q.remaining), cls: 'num' },
      ],
      'data-region',
    );
  });
}

function renderAudit(data) {
  table(
    $('audit').tBodies[0],
    data.regions,
    (r) => r.name,
    (r) => {
      const cp = r.checkpoint || {};
      const alarms = r.alarms || [];
      return [
        { text: `meridian/${r.name}`, header: true },
        { text: r.health === 'ok' ? int(cp.size) : '–', cls: 'num' },
        { text: cp.age_s === undefined ? '–' : `${duration(cp.age_s)} ago`, cls: 'num' },
        {
          text:
            r.role === 'edge'
              ? 'not witnessed (edge)'
              : cp.witnesses && cp.witnesses.length
                ? cp.witnesses.join(', ')
                : 'none yet',
        },
        {
          text: alarms.length ? alarms.map((a) => `${a.region}: ${a.reason}`).join('; ') : 'none',
          cls: alarms.length ? 'bad' : 'ok',
        },
      ];
    },
    'data-region',
  );
}

if (sessionStorage.getItem(TOKEN_KEY)) start();
else showLogin();
