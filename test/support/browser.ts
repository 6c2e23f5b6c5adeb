// Debian's Chromium driven by playwright-core, for tests that look at the Temporal UI as a person does.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { PROJECT_ROOT } from '../../contract/home';

const CHROMIUM = '/usr/bin/chromium';
export const ARTIFACTS = path.join(PROJECT_ROOT, 'test-artifacts');
/** The UI is a single-page app that polls the server: wait for what it renders, never for fixed delays. */
export const UI_TIMEOUT_MS = 30_000;
/** The first screen a test looks at: a laptop's browser window. */
export const VIEWPORT = { width: 1400, height: 1000 };

export async function launchBrowser(): Promise<{ browser: Browser; page: Page }> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 60_000,
    // A test browser talks to the sandbox only: no updates, sync, metrics or other calls home.
    args: [
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-default-apps',
      '--disable-sync',
      '--disable-domain-reliability',
      '--disable-client-side-phishing-detection',
      '--metrics-recording-only',
      '--no-first-run',
      '--no-default-browser-check',
      '--disable-dev-shm-usage',
    ],
  });
  const page = await browser.newPage({ viewport: VIEWPORT });
  page.setDefaultTimeout(UI_TIMEOUT_MS);
  mkdirSync(ARTIFACTS, { recursive: true });
  return { browser, page };
}
