// The Temporal UI as an operator sees it, in a real browser (Debian's Chromium driven by playwright-core):
// a stranger, in a fresh browser with nothing configured, finds a migration waiting at a gate from the
// link tiershift prints or from the plain list, and its page's first screen names the gate and the approve
// command; the list filters on our search attributes, and the page's tabs hold them and the current details.
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readState, sandboxHome } from '../contract/home';
import type { MigrationStatus } from '../contract/status';
import { ARTIFACTS, launchBrowser, UI_TIMEOUT_MS, VIEWPORT } from './support/browser';
import { spawnWorker, tiershift } from './support/cli';
import { eventually } from './support/temporal';


let worker: ReturnType<typeof spawnWorker>;
let browser: Browser;
let page: Page;
let uiUrl: string;
const id = `migration-ui-${Date.now().toString(36)}`;
/** What `tiershift start` printed. */
let startOutput: string;

async function status(): Promise<MigrationStatus> {
  const result = await tiershift(['status', id, '--json']);
  if (result.code !== 0) throw new Error(`status failed: ${result.stderr}`);
  return JSON.parse(result.stdout) as MigrationStatus;
}

beforeAll(async () => {
  uiUrl = readState(sandboxHome())!.temporal!.uiUrl!;
  worker = spawnWorker();
  const started = await tiershift(['start', 'plans/minimal.yaml', '--id', id, '--by', 'alice']);
  if (started.code !== 0) throw new Error(`start failed: ${started.stderr}`);
  startOutput = started.stdout;
  await eventually(status, (s) => s.pendingGate?.gate === 'go');
  ({ browser, page } = await launchBrowser());
});

afterAll(async () => {
  await browser?.close();
  // Leave no migration waiting in the shared sandbox.
  if (worker) {
    await tiershift(['rollback', id, '--reason', 'UI test cleanup', '--by', 'alice']);
    await eventually(status, (s) => s.state === 'rolled-back').catch(() => undefined);
    await worker.stop();
  }
});

/** The workflow list filtered by a visibility query, as typed into the UI's filter bar. */
async function listWith(query: string): Promise<void> {
  await page.goto(`${uiUrl}/namespaces/default/workflows?query=${encodeURIComponent(query)}`);
}

/** The UI renders summary, details and current details as Markdown, each in its own frame. */
async function metadataText(): Promise<string> {
  const frames = page.frames().filter((f) => f !== page.mainFrame());
  const texts = await Promise.all(frames.map((f) => f.locator('body').innerText({ timeout: 5_000 }).catch(() => '')));
  return texts.join('\n');
}

/** Opens a tab of the workflow page (rendered as a link or a tab, depending on the UI version). */
async function openTab(name: string): Promise<void> {
  await page.getByRole('tab', { name }).or(page.getByRole('link', { name })).first().click();
}

describe('Temporal UI for a migration waiting at a gate', () => {
  it('shows a stranger the pending gate and the approve command on the first screen, from the printed link and from the plain list', async () => {
    // The link tiershift prints after start, in status and under list: the UI's list of migrations.
    const printed = startOutput.match(/^All migrations: (\S+)$/m)?.[1];
    expect(printed, startOutput).toBe(`${uiUrl}/namespaces/default/workflows?query=${encodeURIComponent('WorkflowType = "migration"')}`);
    expect(startOutput).toContain(`Temporal UI: ${uiUrl}/namespaces/default/workflows/${id}`);
    const shown = await tiershift(['status', id]);
    expect(shown.stdout.split('\n'), `status exited ${shown.code}: ${shown.stderr}`).toContain(`All migrations: ${printed}`);
    const listed = await tiershift(['list']);
    expect(listed.stdout.split('\n'), `list exited ${listed.code}: ${listed.stderr}`).toContain(`Temporal UI: ${printed}`);
    expect(listed.stdout).toContain('add the columns MigrationState, MigrationPhase, PendingGate and TrafficWeight (kept per browser)');

    // What the gate's timer says in the timeline, the workflow page's first tab.
    const next = `gate go: waiting for approval, no deadline; approve: tiershift approve ${id} --gate go`;
    for (const [name, entry] of [['printed-link', printed!], ['plain-list', `${uiUrl}/namespaces/default/workflows`]] as const) {
      // A fresh browser context: no saved columns, views or preferences, as on a stranger's machine.
      const stranger = await browser.newPage({ viewport: VIEWPORT });
      try {
        await eventually(
          async () => {
            await stranger.goto(entry);
            return stranger.getByRole('link', { name: id }).first().waitFor({ timeout: 10_000 }).then(() => true, () => false);
          },
          Boolean,
          UI_TIMEOUT_MS * 3,
        );
        // Nothing configured: the UI's default columns, and no column settings stored in this browser.
        // (UI 2.54 takes list columns only from the browser's storage, and its list shows no user
        // metadata: the list leads to the page, whose first screen says what comes next.)
        expect(await stranger.evaluate("window.localStorage.getItem('namespace-workflow-table-columns')")).toBeNull();
        // (The first header holds the select-all checkbox's label, not a column.)
        const headers = (await stranger.getByRole('columnheader').allInnerTexts()).map((t) => t.trim()).filter((t) => t && t !== 'Select all Workflows');
        expect(headers).toEqual(['Status', 'Workflow ID', 'Run ID', 'Type', 'Start', 'End']);
        await stranger.screenshot({ path: path.join(ARTIFACTS, `ui-stranger-${name}-list.png`) });

        // The row's link, the one thing to click: the page opens on its first tab, no tab clicked.
        await stranger.getByRole('link', { name: id }).first().click();
        await stranger.waitForURL(/\/timeline(\?|$)/);
        const line = stranger.getByText(next, { exact: true }).first();
        await line.waitFor({ state: 'visible' });
        // On the first screen: inside the viewport, without scrolling.
        const box = (await line.boundingBox())!;
        expect(box.y).toBeGreaterThanOrEqual(0);
        expect(box.y + box.height).toBeLessThanOrEqual(VIEWPORT.height);
        expect(box.x).toBeGreaterThanOrEqual(0);
        expect(box.x + box.width).toBeLessThanOrEqual(VIEWPORT.width);
        await stranger.screenshot({ path: path.join(ARTIFACTS, `ui-stranger-${name}-workflow.png`) });
      } finally {
        await stranger.close();
      }
    }
  });

  it('lists it under its search attributes and shows its current details and the approve command', async () => {
    // Visibility is eventually consistent: the filter may need a reload before the row appears.
    const query = `MigrationState = "awaiting-approval" AND PendingGate = "go" AND PlanName = "minimal"`;
    await eventually(
      async () => {
        await listWith(query);
        return page.getByRole('link', { name: id }).first().waitFor({ timeout: 10_000 }).then(() => true, () => false);
      },
      Boolean,
      UI_TIMEOUT_MS * 3,
    );
    await expect.poll(() => page.locator('main').innerText(), { timeout: UI_TIMEOUT_MS }).toContain('RUNNING');
    await page.screenshot({ path: path.join(ARTIFACTS, 'ui-list-awaiting-approval.png'), fullPage: true });

    // The same filter on another state does not match it.
    await listWith(`MigrationState = "completed" AND WorkflowId = "${id}"`);
    await page.getByText(/No Workflows/i).first().waitFor();

    // Its page: the search attributes the list filtered on...
    await page.goto(`${uiUrl}/namespaces/default/workflows/${encodeURIComponent(id)}`);
    await page.getByText(id).first().waitFor();
    await openTab('Search Attributes');
    const attributes = page.locator('main');
    await expect.poll(() => attributes.innerText(), { timeout: UI_TIMEOUT_MS }).toContain('"MigrationState": "awaiting-approval"');
    const shown = await attributes.innerText();
    expect(shown).toContain('"MigrationPhase": "gate"');
    expect(shown).toContain('"PendingGate": "go"');
    expect(shown).toContain('"PlanName": "minimal"');
    expect(shown).toContain('"TrafficWeight": 0');

    // ...and the runbook-like summary and current details (answered by the worker through a query).
    await openTab('User Metadata');
    await expect.poll(metadataText, { timeout: UI_TIMEOUT_MS }).toContain('Waiting for approval at gate go (0/1); no deadline: it waits until someone decides.');
    const metadata = await metadataText();
    expect(metadata).toContain('minimal: Check the source database, wait for approval, check the target database.');
    expect(metadata).toMatch(/Plan .*plans\/minimal\.yaml \(sha256 [0-9a-f]{12}\), started by alice/);
    // The UI's Markdown renderer typesets "1/3" and quotes: match the words, not the glyphs.
    expect(metadata).toMatch(/minimal — awaiting-approval \(1.3 steps done\)/);
    expect(metadata).toMatch(/Step: Approval gate .go. \(running/);
    expect(metadata).toContain(`Approve: tiershift approve ${id} --gate go`);
    await page.screenshot({ path: path.join(ARTIFACTS, 'ui-workflow-current-details.png'), fullPage: true });
  });
});
