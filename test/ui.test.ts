// The Temporal UI as an operator sees it, in a real browser (Debian's Chromium driven by playwright-core):
// a migration waiting at a gate is found by filtering the list on our search attributes, and its page
// shows the search attributes and the runbook-like current details with the approve command.
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readState, sandboxHome } from '../contract/home';
import type { MigrationStatus } from '../contract/status';
import { ARTIFACTS, launchBrowser, UI_TIMEOUT_MS } from './support/browser';
import { spawnWorker, tiershift } from './support/cli';
import { eventually } from './support/temporal';


let worker: ReturnType<typeof spawnWorker>;
let browser: Browser;
let page: Page;
let uiUrl: string;
const id = `migration-ui-${Date.now().toString(36)}`;

async function status(): Promise<MigrationStatus> {
  const result = await tiershift(['status', id, '--json']);
  if (result.code !== 0) throw new Error(`status failed: ${result.stderr}`);
  return JSON.parse(result.stdout) as MigrationStatus;
}

beforeAll(async () => {
  uiUrl = readState(sandboxHome())!.temporal!.uiUrl;
  worker = spawnWorker();
  const started = await tiershift(['start', 'plans/minimal.yaml', '--id', id, '--by', 'alice']);
  if (started.code !== 0) throw new Error(`start failed: ${started.stderr}`);
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
