// Writes plan/tiershift-plan.schema.json from the zod schema, so editors autocomplete and check plans
// (`$schema: ../plan/tiershift-plan.schema.json` in a plan, or the YAML extension's schema mapping).
// test/plan.test.ts fails when the committed file is stale: run `npx tsx scripts/write-json-schema.ts`.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import { PROJECT_ROOT } from '../contract/home';
import { planSchema } from '../plan/schema';

export const JSON_SCHEMA_FILE = path.join(PROJECT_ROOT, 'plan', 'tiershift-plan.schema.json');

export function planJsonSchema(): string {
  const schema = z.toJSONSchema(planSchema(), { target: 'draft-2020-12', io: 'input' }) as unknown as { properties: { phases: { items: Record<string, unknown> } } };
  // A phase is a one-key mapping; zod's refinement for that has no JSON Schema form of its own.
  Object.assign(schema.properties.phases.items, { minProperties: 1, maxProperties: 1 });
  return `${JSON.stringify({ ...schema, $id: 'https://tiershift.dev/schemas/plan-v1.json', title: 'tiershift plan' }, null, 2)}\n`;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  writeFileSync(JSON_SCHEMA_FILE, planJsonSchema());
  console.log(`wrote ${path.relative(process.cwd(), JSON_SCHEMA_FILE)}`);
}
