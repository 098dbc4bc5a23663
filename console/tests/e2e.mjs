// The console end to end, in Debian's Chromium driven by playwright-core, against a real
// `meridian dev` cluster started with the legacy policy by tests/console_e2e.sh:
//   the token is asked once (a wrong one is refused with 401), the map shows the four
//   regions, registering users changes the counts, a sale shows sold rising to the stock and
//   the moment it sold out, a migration shows its progress and finishes, the page has no
//   console error and never contains the planted phone numbers (nor names, emails, ids).
// Environment: MERIDIAN_URLS (region=url,...), MERIDIAN_ADMIN_TOKEN_FILE, CHROMIUM,
// ARTIFACTS (screenshots), NODE_EXTRA_CA_CERTS (the dev CA, for the API calls made here).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const urls = Object.fromEntries(process.env.MERIDIAN_URLS.split(',').map((kv) => kv.split('=')));
const adminToken = readFileSync(process.env.MERIDIAN_ADMIN_TOKEN_FILE, 'utf8').trim();
const artifacts = process.env.ARTIFACTS;
const edge = urls.california;
const ADMIN = { authorization: `Bearer ${adminToken}` };
const PASSWORD = 'correct horse battery';
const started = Date.now();

const log = (msg) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}`);

async function api(method, url, body, headers = {}) {
  const res = await fetch(url, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
    redirect: 'follow', // a 307 to the home region keeps the method and body
  });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, json, text };
}

// Users planted for the privacy check: three stay in beijing, six are misplaced there under
// the legacy policy and move when the current one is applied.
const USERS = [
  { country: 'CN', phone: '138 0013 8201', e164: '+8613800138201', name: 'Li Na', email: 'li.na@example.cn' },
  { country: 'CN', phone: '138 0013 8202', e164: '+8613800138202', name: 'Zhou Min', email: 'zhou.min@example.cn' },
  { country: 'CN', phone: '138 0013 8203', e164: '+8613800138203', name: 'Chen Jie', email: 'chen.jie@example.cn' },
  { country: 'US', phone: '(650) 253-0201', e164: '+16502530201', name: 'Ada Byron', email: 'ada.byron@example.com' },
  { country: 'US', phone: '(650) 253-0202', e164: '+16502530202', name: 'Alan Turing', email: 'alan@example.com' },
  { country: 'IN', phone: '+91 98765 40201', e164: '+919876540201', name: 'Asha Iyer', email: 'asha.iyer@example.in' },
  { country: 'IN', phone: '+91 98765 40202', e164: '+919876540202', name: 'Ravi Kumar', email: 'ravi@example.in' },
  { country: 'BR', phone: '+55 11 91234-0201', e164: '+5511912340201', name: 'Joana Silva', email: 'joana@example.br' },
  { country: 'DE', phone: '+49 1512 3450201', e164: '+4915123450201', name: 'Greta Braun', email: 'greta@example.de' },
];
const STAYING = USERS.filter((u) => u.country === 'CN');
const STOCK = 30;

function secrets() {
  const out = [];
  for (const u of USERS) {
    out.push(u.phone, u.e164, u.e164.slice(1), u.name, u.email);
    if (u.user_id) out.push(u.user_id);
    if (u.token) out.push(u.token);
  }
  return out;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-dev-shm-usage',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
  ],
});
let page;
let failed = false;
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
  page = await context.newPage();
  page.setDefaultTimeout(30_000);
  const errors = [];
  let allow401 = false;
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    if (allow401 && /status of 401/.test(msg.text())) return; // the wrong token, on purpose
    errors.push(msg.text());
  });
  page.on('pageerror', (err) => errors.push(String(err)));
  const overviews = [];
  page.on('response', async (res) => {
    if (!res.url().endsWith('/v1/admin/overview') || res.status() !== 200) return;
    try {
      overviews.push(await res.text());
    } catch {
      // the page moved on
    }
  });
  const shot = (name, opts = {}) => page.screenshot({ path: path.join(artifacts, `${name}.png`), fullPage: true, ...opts });
  // Nothing personal on the page or in what it was sent.
  const checkPrivacy = async (stage) => {
    const html = await page.content();
    const text = await page.evaluate(() => document.body.innerText);
    for (const s of secrets()) {
      assert.ok(!html.includes(s) && !text.includes(s), `${stage}: the page shows '${s}'`);
      for (const body of overviews) assert.ok(!body.includes(s), `${stage}: the overview holds '${s}'`);
    }
  };
  const cell = (region) => page.locator(`#regions tr[data-region="${region}"] td.users`);
  const waitUsers = async (counts) => {
    for (const [region, n] of Object.entries(counts)) {
      await page.waitForFunction(
        ([r, want]) => document.querySelector(`#regions tr[data-region="${r}"] td.users`)?.textContent === want,
        [region, String(n)],
      );
    }
  };

  // 1. The token is asked once; a wrong one is refused; all by keyboard.
  await page.goto(`${edge}/`);
  await page.getByLabel('Admin token', { exact: true }).waitFor();
  assert.equal(await page.evaluate(() => document.activeElement.id), 'token', 'the token field has the focus');
  assert.ok(await page.locator('#dashboard').isHidden(), 'nothing but the prompt before the token');
  await shot('01-login');
  allow401 = true;
  await page.keyboard.type('not-the-admin-token');
  await page.keyboard.press('Enter');
  await page.getByText('refused that token (401').waitFor();
  allow401 = false;
  await page.keyboard.type(adminToken);
  await page.keyboard.press('Enter');
  log('logged in');

  // 2. The map shows the four regions, all healthy; under the legacy policy every country
  // is homed in beijing.
  await page.waitForFunction(() => document.querySelectorAll('svg g.region[data-health="ok"]').length === 4);
  const regions = await page.locator('svg g.region').evaluateAll((els) => els.map((e) => e.dataset.region).sort());
  assert.deepEqual(regions, ['beijing', 'california', 'oregon', 'singapore']);
  assert.equal(await page.locator('svg path[data-country="US"]').getAttribute('data-home'), 'beijing');
  assert.equal(await cell('beijing').textContent(), '0');
  assert.equal(await page.locator('#regions tr[data-region="california"] td.users').textContent(), 'none (edge)');
  // Asked once: a reload keeps the session's token.
  await page.reload();
  await page.waitForFunction(() => document.querySelectorAll('svg g.region').length === 4);
  assert.ok(await page.locator('#login').isHidden(), 'no second prompt after a reload');
  // Keyboard: the skip link, then the header's button.
  await page.locator('body').focus();
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.className), 'skip');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'forget');
  await shot('02-map-empty');
  log('map shows the four regions');

  // 3. Registering users through the API (at the edge, redirected home) changes the counts.
  for (const u of USERS) {
    const r = await api('POST', `${edge}/v1/accounts`, {
      country: u.country,
      phone: u.phone,
      password: PASSWORD,
      name: u.name,
      email: u.email,
    });
    assert.equal(r.status, 201, `register ${u.country}: ${r.text}`);
    assert.equal(r.json.home_region, 'beijing');
    u.user_id = r.json.user_id;
    u.token = r.json.token;
  }
  await waitUsers({ beijing: USERS.length, oregon: 0, singapore: 0 });
  await checkPrivacy('after registration');
  log(`${USERS.length} users registered, counts shown`);

  // 4. A sale: sold rises to the stock, never beyond, and the sold-out moment is shown.
  let r = await api('POST', `${edge}/v1/admin/products`, { sku: 'mi4', name: 'Mi 4', price: 199900, currency: 'CNY' }, ADMIN);
  assert.equal(r.status, 201, r.text);
  const now = Date.now();
  r = await api(
    'POST',
    `${edge}/v1/admin/sales`,
    {
      id: 'launch',
      sku: 'mi4',
      stock: STOCK,
      per_user_limit: STOCK,
      starts_at: new Date(now - 1000).toISOString().replace(/\.\d+Z$/, 'Z'),
      ends_at: new Date(now + 3600_000).toISOString().replace(/\.\d+Z$/, 'Z'),
    },
    ADMIN,
  );
  assert.equal(r.status, 201, r.text);
  await page.locator('article.sale[data-sale="launch"]').waitFor();
  const soldSeen = [];
  let buying = true;
  const watcher = (async () => {
    while (buying) {
      const t = await page.locator('article.sale[data-sale="launch"] .sold dd').textContent();
      const n = Number(t.split(' of ')[0].replace(/,/g, ''));
      if (soldSeen.at(-1) !== n) soldSeen.push(n);
      await page.waitForTimeout(250);
    }
  })();
  let bought = 0;
  for (let i = 0; bought < STOCK + 5; i++) {
    const u = STAYING[i % STAYING.length];
    const res = await api('POST', `${edge}/v1/sales/launch/purchase`, undefined, {
      authorization: `Bearer ${u.token}`,
      'idempotency-key': `e2e-${i}`,
    });
    if (bought < STOCK) assert.equal(res.status, 201, `purchase ${i}: ${res.text}`);
    else assert.equal(res.json?.error, 'sold_out', `purchase ${i} after the stock: ${res.text}`);
    bought += 1;
    if (bought === 10) await shot('03-sale-selling');
    await new Promise((ok) => setTimeout(ok, 120));
  }
  await page.waitForSelector('article.sale[data-sale="launch"][data-state="sold_out"]');
  buying = false;
  await watcher;
  const sale = page.locator('article.sale[data-sale="launch"]');
  assert.equal(await sale.locator('.sold dd').textContent(), `${STOCK} of ${STOCK}`);
  assert.equal(await sale.locator('.remaining dd').textContent(), '0');
  assert.equal(await sale.locator('.oversold dd').textContent(), '0');
  assert.notEqual(await sale.locator('.soldout dd').textContent(), 'not sold out');
  const rising = [...soldSeen, STOCK];
  assert.ok(rising.every((v, i) => i === 0 || v >= rising[i - 1]), `sold only rises: ${soldSeen}`);
  assert.ok(soldSeen.some((v) => v > 0 && v < STOCK), `sold was seen rising, not only jumping: ${soldSeen}`);
  // The chart has drawn answers to buyers, sold out ones included.
  await page.waitForFunction(() => /[1-9][\d,]* sold-out answers in all/.test(document.getElementById('chart-now').textContent));
  await checkPrivacy('after the sale');
  await shot('04-sale-sold-out');
  log(`sale sold out; sold seen: ${soldSeen.join(' ')}`);

  // 5. The current policy and a migration: its progress (held by a pause, so the page shows
  // it mid-way), its arcs, then its end; the counts follow the users.
  r = await api('PUT', `${edge}/v1/admin/policy`, { builtin: 'current' }, ADMIN);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.misplaced_users, USERS.length - STAYING.length);
  await page.waitForFunction(() => document.querySelector('svg path[data-country="US"]')?.dataset.home === 'oregon');
  r = await api('POST', `${edge}/v1/admin/migrations`, { from: 'beijing', cohort: 'misplaced' }, ADMIN);
  assert.equal(r.status, 202, r.text);
  const id = r.json.id;
  r = await api('POST', `${edge}/v1/admin/migrations/${id}/pause`, undefined, ADMIN);
  assert.equal(r.status, 200, r.text);
  const mig = page.locator(`article.migration[data-migration="${id}"]`);
  await mig.waitFor();
  const max = Number(await mig.locator('progress').getAttribute('max'));
  assert.equal(max, USERS.length - STAYING.length);
  // Users already moving when the pause came finish their move (migration_parallel of
  // them); the others wait, so the page shows the migration part-way.
  let held = await api('GET', `${edge}/v1/admin/migrations/${id}`, undefined, ADMIN);
  for (let i = 0; i < 20 && held.json.state === 'running'; i++) {
    await new Promise((ok) => setTimeout(ok, 1500)); // until those moves are over
    const again = await api('GET', `${edge}/v1/admin/migrations/${id}`, undefined, ADMIN);
    const settled = again.json.users_moved === held.json.users_moved;
    held = again;
    if (settled) break;
  }
  if (held.json.state === 'running') {
    await page.waitForFunction(
      ([sel, moved]) =>
        document.querySelector(`${sel} h3`)?.textContent.includes('(paused)') &&
        document.querySelector(`${sel} progress`)?.getAttribute('value') === String(moved),
      [`article.migration[data-migration="${id}"]`, held.json.users_moved],
    );
    assert.match(await mig.locator('p.figures').textContent(), new RegExp(`^${held.json.users_moved} of 6 users moved`));
    assert.ok((await page.locator('svg g.arc').count()) >= 1, 'arcs from beijing while it runs');
  } else {
    log(`the migration was done before the pause (${held.text})`);
  }
  await shot('05-migration-running');
  r = await api('POST', `${edge}/v1/admin/migrations/${id}/resume`, undefined, ADMIN);
  assert.equal(r.status, 200, r.text);
  await page.waitForSelector(`article.migration[data-migration="${id}"][data-state="done"]`, { timeout: 60_000 });
  assert.equal(await mig.locator('progress').getAttribute('value'), String(max));
  assert.match(await mig.locator('p.figures').textContent(), /^6 of 6 users moved/);
  await waitUsers({ beijing: STAYING.length, oregon: 4, singapore: 2 });
  assert.equal(await page.locator('svg g.arc').count(), 0, 'no arc once it is done');
  await checkPrivacy('after the migration');
  await shot('06-migration-done');
  log(`migration ${id} done, counts moved`);

  // 6. Transparency: every home region's checkpoint is cosigned by the other two.
  await page.waitForFunction(() =>
    ['beijing', 'oregon', 'singapore'].every((r) => {
      const cells = document.querySelectorAll(`#audit tr[data-region="${r}"] td`);
      return cells.length === 4 && cells[2].textContent.split(', ').length === 2;
    }),
  );

  // 7. A phone-sized screen: one column, nothing wider than the screen.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(1200);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow}px wider than a phone`);
  await shot('07-phone');
  await checkPrivacy('on a phone');

  assert.deepEqual(errors, [], 'no console errors');
  console.log(`console e2e: ok in ${((Date.now() - started) / 1000).toFixed(1)}s; screenshots in ${artifacts}`);
} catch (err) {
  failed = true;
  console.error('console e2e: FAILED:', err);
  if (page) await page.screenshot({ path: path.join(artifacts, 'failure.png'), fullPage: true }).catch(() => {});
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
